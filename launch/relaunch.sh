#!/usr/bin/env bash
# Brings a preempted run back: if the TPU VM is PREEMPTED or TERMINATED, or describe says it does not exist
# (NOT_FOUND), deletes it, creates it again (--queued: waits until ACTIVE), sets it up and reruns the config on
# the same (bucket) workdir, which resumes from its checkpoints. A VM in any other state (CREATING, REPAIRING,
# STOPPED by someone, ...) is left alone, and so is a queued resource still waiting for its VM. A describe that
# fails otherwise (an expired login, an API error) is tried 3 times, each failure reported, and then nothing is
# done: a VM that cannot be seen is never deleted.
# --every=SECONDS keeps checking (a watchdog); without it, checks once (exit 1 when the VM could not be seen).
# --dry_run assumes it was preempted.
# Usage: launch/relaunch.sh --name=NAME --zone=ZONE --config=C --workdir=DIR [--shared_workdir] [--bucket=B]
#                           [--extra=tpu] [--accelerator=T] [--version=V] [--spot] [--queued] [--wait=S]
#                           [--every=SECONDS] [--project=P] [--dry_run] [-- --config.field=value ...]
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
    --config=* | --workdir=* | --shared_workdir) run_args+=("$1") ;;
    --every=*) EVERY="${1#*=}" ;;
    --) run_args+=("$@"); break ;;
    *) common_flag "$1" || die "unknown flag $(quote "$1")" ;;
  esac
  shift
done
require_name_and_zone
[[ $EVERY =~ ^[0-9]+$ ]] || die "--every=$(quote "$EVERY"): expected seconds"
common_args

DESCRIBE_TRIES=3

# Prints the VM's state, or NOT_FOUND when describe says the VM does not exist. Any other failure is retried
# (POLL_SECONDS apart) and reported; after DESCRIBE_TRIES of them it returns 1: an unknown state is not a gone VM.
vm_state() {
  local try state errors message
  errors="$(mktemp)"
  for ((try = 1; try <= DESCRIBE_TRIES; try++)); do
    if state="$(tpus tpu-vm describe "$NAME" --format='value(state)' 2>"$errors")" && [[ -n $state ]]; then
      rm -f "$errors"
      echo "$state"
      return
    fi
    message="$(<"$errors")"
    if [[ $message == *"NOT_FOUND: Resource '"*"nodes/$NAME' was not found"* ]]; then
      rm -f "$errors"
      echo NOT_FOUND
      return
    fi
    message="$(grep -m 1 . "$errors" || echo "it printed no state")"
    echo "# describe $NAME failed (try $try of $DESCRIBE_TRIES): $message" >&2
    if ((try < DESCRIBE_TRIES)); then sleep "$POLL_SECONDS"; fi
  done
  rm -f "$errors"
  echo "# $NAME: state unknown after $DESCRIBE_TRIES tries; nothing done (a VM not seen is never deleted)" >&2
  return 1
}

relaunch_if_needed() {
  local state="PREEMPTED"
  if [[ $DRY_RUN == 1 ]]; then
    tpus tpu-vm describe "$NAME" --format='value(state)'
  else
    state="$(vm_state)" || return 1
  fi
  case "$state" in
    PREEMPTED | TERMINATED | NOT_FOUND) ;;
    *) echo "# $NAME is $state; nothing to do" >&2; return ;;
  esac
  if [[ $state == NOT_FOUND && ${#delete_args[@]} -gt 0 && $DRY_RUN == 0 ]]; then
    # No VM yet is no lost VM while its queued resource still waits: deleting it would only lose its place.
    local queued errors
    errors="$(mktemp)"
    if ! queued="$(tpus queued-resources describe "$NAME" --format='value(state.state)' 2>"$errors")"; then
      if ! grep -q "NOT_FOUND" "$errors"; then  # unknown is not gone: its place in the queue may be all it has
        echo "# queued resource $NAME: state unknown ($(grep -m 1 . "$errors" || echo "describe failed")); nothing done" >&2
        rm -f "$errors"
        return 1
      fi
      queued=NOT_FOUND
    fi
    rm -f "$errors"
    case "$queued" in
      WAITING_FOR_RESOURCES | ACCEPTED | CREATING | PROVISIONING | DELETING)
        echo "# $NAME has no VM yet: its queued resource is $queued; nothing to do" >&2; return ;;
    esac
  fi
  echo "# $NAME is $state: recreating it and resuming the run" >&2
  # A spot queued resource that lost its VM is SUSPENDED with no node left: delete it all the same.
  if [[ $state != NOT_FOUND || ${#delete_args[@]} -gt 0 ]]; then
    "$here/delete.sh" "${COMMON_ARGS[@]}" "${delete_args[@]}" || echo "# delete failed; creating anyway" >&2
  fi
  # Each step stops the attempt: the watchdog calls this where `set -e` does not apply.
  "$here/create.sh" "${COMMON_ARGS[@]}" "${create_args[@]}" || return
  "$here/setup.sh" "${COMMON_ARGS[@]}" "${setup_args[@]}" || return
  "$here/run.sh" "${COMMON_ARGS[@]}" "${run_args[@]}"
}

if [[ $EVERY == 0 || $DRY_RUN == 1 ]]; then
  relaunch_if_needed
  exit
fi
# The watchdog outlives a failed attempt (a VM it could not see, no capacity, a setup error): it says so and
# tries again.
while true; do
  (relaunch_if_needed) || echo "# relaunch attempt failed (exit $?); trying again in $EVERY s" >&2
  sleep "$EVERY"
done
