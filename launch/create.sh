#!/usr/bin/env bash
# Creates a Cloud TPU VM: on demand (default), --spot, or --queued (a queued resource, optionally spot;
# waits until it is ACTIVE, at most --wait=SECONDS, and stops with an error if it FAILED or was SUSPENDED).
# The runtime version follows the accelerator type (v4 and older, v5e, v5p, v6e: launch/README.md);
# --version overrides it.
# Usage: launch/create.sh --name=NAME --zone=ZONE [--accelerator=v4-8] [--version=RUNTIME] [--spot]
#                         [--queued] [--wait=3600] [--project=P] [--dry_run]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ACCELERATOR=v4-8
VERSION=""
SPOT=0
QUEUED=0
WAIT=3600
for arg in "$@"; do
  case "$arg" in
    --accelerator=*) ACCELERATOR="${arg#*=}" ;;
    --version=*) VERSION="${arg#*=}" ;;
    --spot) SPOT=1 ;;
    --queued) QUEUED=1 ;;
    --wait=*) WAIT="${arg#*=}" ;;
    *) common_flag "$arg" || die "unknown flag $(quote "$arg")" ;;
  esac
done
require_name_and_zone
[[ $WAIT =~ ^[0-9]+$ ]] || die "--wait=$(quote "$WAIT"): expected seconds"
if [[ -z $VERSION ]]; then VERSION="$(runtime_version_for "$ACCELERATOR")" || exit 2; fi

# Polls the queued resource until it is ACTIVE; FAILED or SUSPENDED (or the deadline) ends with one error.
wait_until_active() {
  local deadline=$((SECONDS + WAIT)) state
  while true; do
    state="$(tpus queued-resources describe "$NAME" --format='value(state.state)')" ||
      die "queued resource $NAME: describe failed"
    case "$state" in
      ACTIVE) echo "# queued resource $NAME is ACTIVE" >&2; return ;;
      FAILED | SUSPENDED | SUSPENDING)
        die "queued resource $NAME is $state: no TPU was granted (delete it with launch/delete.sh --queued)" ;;
    esac
    ((SECONDS < deadline)) || die "queued resource $NAME still $state after --wait=$WAIT seconds"
    echo "# queued resource $NAME is $state; checking again in $POLL_SECONDS s" >&2
    sleep "$POLL_SECONDS"
  done
}

spot=()
if [[ $SPOT == 1 ]]; then spot=(--spot); fi
if [[ $QUEUED == 1 ]]; then
  tpus queued-resources create "$NAME" --node-id="$NAME" --accelerator-type="$ACCELERATOR" \
    --runtime-version="$VERSION" "${spot[@]}"
  if [[ $DRY_RUN == 1 ]]; then
    tpus queued-resources describe "$NAME" --format='value(state.state)'
  else
    wait_until_active
  fi
else
  tpus tpu-vm create "$NAME" --accelerator-type="$ACCELERATOR" --version="$VERSION" "${spot[@]}"
fi
