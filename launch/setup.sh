#!/usr/bin/env bash
# Copies this checkout (git HEAD) to every worker's ~/iml-jax (code only: replaced on every setup) and runs
# launch/worker_setup.sh there: uv from PyPI, Python 3.11 from uv (the stock images' python3 is 3.10 and is
# left alone), ~/iml-venv with `-e ~/iml-jax[EXTRA]` (default tpu). A code directory that holds run outputs
# (config.json, DONE: left by an older setup) is never replaced; setup stops and names it.
# With --bucket, mounts that GCS bucket with gcsfuse at /mnt/BUCKET on every worker: an alternative to a gs://
# workdir (directory renames, which finish a checkpoint there, are atomic only on hierarchical-namespace buckets).
# Usage: launch/setup.sh --name=NAME --zone=ZONE [--bucket=BUCKET] [--extra=tpu] [--project=P] [--dry_run]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUCKET=""
EXTRA=tpu
for arg in "$@"; do
  case "$arg" in
    --bucket=*) BUCKET="${arg#*=}" ;;
    --extra=*) EXTRA="${arg#*=}" ;;
    *) common_flag "$arg" || die "unknown flag $(quote "$arg")" ;;
  esac
done
require_name_and_zone
[[ $EXTRA =~ ^[a-z0-9_-]*$ ]] || die "--extra=$(quote "$EXTRA"): expected the name of a setup.py extra, or empty"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
archive="${TMPDIR:-/tmp}/iml-jax-$NAME.tar.gz"
run git -C "$repo_root" archive --format=tar.gz --output="$archive" HEAD
tpus tpu-vm scp "$archive" "$NAME:iml-jax.tar.gz" --worker=all

install="set -e; found=\$(find $REMOTE_DIR \\( -name config.json -o -name DONE \\) -print -quit 2>/dev/null || true)"
install+="; if [ -n \"\$found\" ]; then echo \"\$(hostname): $REMOTE_DIR holds run outputs (\$found):"
install+=" move them out of the code directory, then rerun setup\" >&2; exit 3; fi"
install+="; rm -rf $REMOTE_DIR; mkdir -p $REMOTE_DIR; tar -xzf ~/iml-jax.tar.gz -C $REMOTE_DIR"
install+="; bash $REMOTE_DIR/launch/worker_setup.sh --extra=$EXTRA"
on_all_workers "$install"

if [[ -n $BUCKET ]]; then
  mount_point="/mnt/$BUCKET"
  gcsfuse="set -e; if ! command -v gcsfuse >/dev/null; then"
  gcsfuse+=" echo \"deb https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -c -s) main\""
  gcsfuse+=" | sudo tee /etc/apt/sources.list.d/gcsfuse.list"
  gcsfuse+=" && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -"
  gcsfuse+=" && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi"
  gcsfuse+="; sudo mkdir -p $(quote "$mount_point") && sudo chown \"\$USER\" $(quote "$mount_point")"
  gcsfuse+="; mountpoint -q $(quote "$mount_point") || gcsfuse --implicit-dirs --rename-dir-limit=1000000 $(quote "$BUCKET") $(quote "$mount_point")"
  on_all_workers "$gcsfuse"
fi
