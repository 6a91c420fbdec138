#!/usr/bin/env bash
# Deletes the TPU VM (with --queued: its queued resource too). The workdir on a bucket is kept.
# Usage: launch/delete.sh --name=NAME --zone=ZONE [--queued] [--project=P] [--dry_run]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

QUEUED=0
for arg in "$@"; do
  case "$arg" in
    --queued) QUEUED=1 ;;
    *) common_flag "$arg" || die "unknown flag $(quote "$arg")" ;;
  esac
done
require_name_and_zone

if [[ $QUEUED == 1 ]]; then
  tpus queued-resources delete "$NAME" --force --quiet
else
  tpus tpu-vm delete "$NAME" --quiet
fi
