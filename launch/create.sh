#!/usr/bin/env bash
# Creates a Cloud TPU VM: on demand (default), --spot, or --queued (a queued resource, optionally spot).
# Usage: launch/create.sh --name=NAME --zone=ZONE [--accelerator=v4-8] [--version=tpu-ubuntu2204-base]
#                         [--spot] [--queued] [--project=P] [--dry_run]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ACCELERATOR=v4-8
VERSION=tpu-ubuntu2204-base
SPOT=0
QUEUED=0
for arg in "$@"; do
  case "$arg" in
    --accelerator=*) ACCELERATOR="${arg#*=}" ;;
    --version=*) VERSION="${arg#*=}" ;;
    --spot) SPOT=1 ;;
    --queued) QUEUED=1 ;;
    *) common_flag "$arg" || die "unknown flag $(quote "$arg")" ;;
  esac
done
require_name_and_zone

spot=()
if [[ $SPOT == 1 ]]; then spot=(--spot); fi
if [[ $QUEUED == 1 ]]; then
  tpus queued-resources create "$NAME" --node-id="$NAME" --accelerator-type="$ACCELERATOR" \
    --runtime-version="$VERSION" "${spot[@]}"
  echo "# queued: launch/setup.sh once 'gcloud compute tpus queued-resources describe' says ACTIVE" >&2
else
  tpus tpu-vm create "$NAME" --accelerator-type="$ACCELERATOR" --version="$VERSION" "${spot[@]}"
fi
