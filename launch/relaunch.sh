#!/usr/bin/env bash
# Brings a preempted run back: if the TPU VM is PREEMPTED, TERMINATED, STOPPED or gone, deletes it, creates
# it again (--queued: waits until ACTIVE), sets it up and reruns the config on the same (bucket) workdir,
# which resumes from its checkpoints. A VM in any other state (CREATING, REPAIRING, ...) is left to settle.
# --every=SECONDS keeps checking (a watchdog); without it, checks once. --dry_run assumes it was preempted.
# Usage: launch/relaunch.sh --name=NAME --zone=ZONE --config=C --workdir=DIR [--bucket=B] [--extra=tpu]
#                           [--accelerator=T] [--version=V] [--spot] [--queued] [--wait=S] [--every=SECONDS]
#                           [--project=P] [--dry_run] [-- --config.field=value ...]
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
    --accelerator=* | --version=* | --spot | --wait=*) create_args+=("$1") ;;
    --queued) create_args+=("$1"); delete_args+=("$1") ;;
    --bucket=* | --extra=*) setup_args+=("$1") ;;
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
  case "$state" in
    PREEMPTED | TERMINATED | STOPPED | MISSING) ;;
    *) echo "# $NAME is $state; nothing to do" >&2; return ;;
  esac
  echo "# $NAME is $state: recreating it and resuming the run" >&2
  # A spot queued resource that lost its VM is SUSPENDED with no node left: delete it all the same.
  if [[ $state != MISSING || ${#delete_args[@]} -gt 0 ]]; then
    "$here/delete.sh" "${COMMON_ARGS[@]}" "${delete_args[@]}" || echo "# delete failed; creating anyway" >&2
  fi
  "$here/create.sh" "${COMMON_ARGS[@]}" "${create_args[@]}"
  "$here/setup.sh" "${COMMON_ARGS[@]}" "${setup_args[@]}"
  "$here/run.sh" "${COMMON_ARGS[@]}" "${run_args[@]}"
}

if [[ $EVERY == 0 || $DRY_RUN == 1 ]]; then
  relaunch_if_needed
  exit
fi
# The watchdog outlives a failed attempt (no capacity, a setup error): it says so and tries again.
while true; do
  (relaunch_if_needed) || echo "# relaunch attempt failed (exit $?); trying again in $EVERY s" >&2
  sleep "$EVERY"
done
