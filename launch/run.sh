#!/usr/bin/env bash
# Starts a config on every worker (jax.distributed across hosts) in the background, logging to ~/iml-run.log.
# Rerunning it on the same workdir resumes from the last checkpoints. The workdir is resolved on each worker
# (~/x and relative paths: under that worker's home); one inside the code directory ~/iml-jax is refused.
# A multi-host slice needs a workdir all workers share: gs://BUCKET/path (or a gcsfuse mount, see setup.sh);
# one host can use a local directory.
# Usage: launch/run.sh --name=NAME --zone=ZONE --config=configs/x.py[:args] --workdir=DIR [--project=P]
#                      [--dry_run] [-- --config.field=value ...]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONFIG=""
WORKDIR=""
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config=*) CONFIG="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --) shift; EXTRA=("$@"); break ;;
    *) common_flag "$1" || die "unknown flag $(quote "$1")" ;;
  esac
  shift
done
require_name_and_zone
[[ -n $CONFIG ]] || die "--config=<configs/x.py[:args]> is required"
[[ -n $WORKDIR ]] || die "--workdir=<directory every worker can write; /mnt/BUCKET/... on a pod> is required"

# The script path stays unquoted so the worker's shell expands its ~; every user value is quoted.
args=(--config="$CONFIG" --workdir="$WORKDIR" -- "${EXTRA[@]}")
on_all_workers "bash $REMOTE_DIR/launch/worker_run.sh $(quote "${args[@]}")"
