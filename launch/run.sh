#!/usr/bin/env bash
# Starts a config on every worker (jax.distributed across hosts) in the background, logging to ~/iml-run.log.
# Rerunning it on the same workdir resumes from the last checkpoints. The workdir is resolved on each worker
# (~/x and relative paths: under that worker's home); one inside the code directory ~/iml-jax is refused.
# A multi-host slice needs a workdir all workers share: gs://BUCKET/path, or /mnt/BUCKET/path (setup.sh --bucket
# mounts it with gcsfuse); any other workdir is refused there, before anything starts, unless --shared_workdir
# says it is a mount every worker shares (NFS, Filestore). One host can use a local directory.
# Usage: launch/run.sh --name=NAME --zone=ZONE --config=configs/x.py[:args] --workdir=DIR [--shared_workdir]
#                      [--project=P] [--dry_run] [-- --config.field=value ...]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONFIG=""
WORKDIR=""
SHARED=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config=*) CONFIG="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --shared_workdir) SHARED=1 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) common_flag "$1" || die "unknown flag $(quote "$1")" ;;
  esac
  shift
done
require_name_and_zone
[[ -n $CONFIG ]] || die "--config=<configs/x.py[:args]> is required"
[[ -n $WORKDIR ]] || die "--workdir=<directory every worker can write; gs://BUCKET/... on a pod> is required"

# Workers that each write their own copy of the workdir wait for each other at the first checkpoint forever.
if [[ $SHARED == 0 && $WORKDIR != gs://* && $WORKDIR != /mnt/* ]]; then
  if [[ $DRY_RUN == 1 ]]; then
    tpus tpu-vm describe "$NAME" --format='value(networkEndpoints[].ipAddress)'
  else
    endpoints="$(tpus tpu-vm describe "$NAME" --format='value(networkEndpoints[].ipAddress)')" ||
      die "cannot tell how many workers $NAME has (describe failed), so cannot check --workdir=$(quote "$WORKDIR")"
    IFS=';' read -r -a workers <<<"$endpoints"
    if ((${#workers[@]} > 1)); then
      die "--workdir=$(quote "$WORKDIR"): $NAME has ${#workers[@]} workers, and each would write its own copy;" \
        "give one they all share: gs://BUCKET/path, /mnt/BUCKET/path (setup.sh --bucket), or --shared_workdir"
    fi
  fi
fi

# The script path stays unquoted so the worker's shell expands its ~; every user value is quoted.
args=(--config="$CONFIG" --workdir="$WORKDIR" -- "${EXTRA[@]}")
on_all_workers "bash $REMOTE_DIR/launch/worker_run.sh $(quote "${args[@]}")"
