#!/usr/bin/env bash
# Brings a preempted run back: if the TPU VM is not READY, deletes it, creates it again, sets it up and
# reruns the config on the same (bucket) workdir, which resumes from its checkpoints. --every=SECONDS
# keeps checking (a watchdog); without it, checks once. --dry_run assumes the VM was preempted.
# Usage: launch/relaunch.sh --name=NAME --zone=ZONE --config=C --workdir=DIR [--bucket=B] [--accelerator=T]
#                           [--version=V] [--spot] [--queued] [--every=SECONDS] [--project=P] [--dry_run]
#                           [-- --config.field=value ...]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

here="$(dirname "${BASH_SOURCE[0]}")"
create_args=()
setup_args=()
run_args=()
delete_args=()
EVERY=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --accelerator=* | --version=* | --spot) create_args+=("$1") ;;
    --queued) create_args+=("$1"); delete_args+=("$1") ;;
    --bucket=*) setup_args+=("$1") ;;
    --config=* | --workdir=*) run_args+=("$1") ;;
    --every=*) EVERY="${1#*=}" ;;
    --) run_args+=("$@"); break ;;
    *) common_flag "$1" || die "unknown flag $(quote "$1")" ;;
  esac
  shift
done
require_name_and_zone
[[ $EVERY =~ ^[0-9]+$ ]] || die "--every=$(quote "$EVERY"): expected seconds"
common_args

relaunch_if_needed() {
  local state="PREEMPTED"
  if [[ $DRY_RUN == 1 ]]; then
    tpus tpu-vm describe "$NAME" --format='value(state)'
  else
    state="$(tpus tpu-vm describe "$NAME" --format='value(state)' 2>/dev/null || echo MISSING)"
  fi
  if [[ $state == READY ]]; then
    echo "$NAME is READY; nothing to do" >&2
    return
  fi
  echo "# $NAME is $state: recreating it and resuming the run" >&2
  if [[ $state != MISSING ]]; then "$here/delete.sh" "${COMMON_ARGS[@]}" "${delete_args[@]}"; fi
  "$here/create.sh" "${COMMON_ARGS[@]}" "${create_args[@]}"
  "$here/setup.sh" "${COMMON_ARGS[@]}" "${setup_args[@]}"
  "$here/run.sh" "${COMMON_ARGS[@]}" "${run_args[@]}"
}

relaunch_if_needed
while [[ $EVERY -gt 0 && $DRY_RUN == 0 ]]; do
  sleep "$EVERY"
  relaunch_if_needed
done
