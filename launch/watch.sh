#!/usr/bin/env bash
# Follows the run's log on one worker (default 0: the process that prints progress and results).
# Usage: launch/watch.sh --name=NAME --zone=ZONE [--worker=0] [--lines=50] [--project=P] [--dry_run]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

WORKER=0
LINES_SHOWN=50
for arg in "$@"; do
  case "$arg" in
    --worker=*) WORKER="${arg#*=}" ;;
    --lines=*) LINES_SHOWN="${arg#*=}" ;;
    *) common_flag "$arg" || die "unknown flag $(quote "$arg")" ;;
  esac
done
require_name_and_zone
[[ $WORKER =~ ^[0-9]+$ ]] || die "--worker=$(quote "$WORKER"): expected a worker index"
[[ $LINES_SHOWN =~ ^[0-9]+$ ]] || die "--lines=$(quote "$LINES_SHOWN"): expected a number"

tpus tpu-vm ssh "$NAME" --worker="$WORKER" --command="tail -n $LINES_SHOWN -F $REMOTE_LOG"
