#!/usr/bin/env bash
# Copies this checkout (git HEAD) to every worker, installs it with the TPU extra into a venv, and, with
# --bucket, mounts that GCS bucket with gcsfuse at /mnt/BUCKET on every worker (a workdir all hosts share;
# directory renames, which finish a checkpoint, are atomic only on buckets with hierarchical namespace).
# Usage: launch/setup.sh --name=NAME --zone=ZONE [--bucket=BUCKET] [--project=P] [--dry_run]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BUCKET=""
for arg in "$@"; do
  case "$arg" in
    --bucket=*) BUCKET="${arg#*=}" ;;
    *) common_flag "$arg" || die "unknown flag $(quote "$arg")" ;;
  esac
done
require_name_and_zone

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
archive="${TMPDIR:-/tmp}/iml-jax-$NAME.tar.gz"
run git -C "$repo_root" archive --format=tar.gz --output="$archive" HEAD
tpus tpu-vm scp "$archive" "$NAME:iml-jax.tar.gz" --worker=all

install="set -e; rm -rf $REMOTE_DIR; mkdir -p $REMOTE_DIR; tar -xzf ~/iml-jax.tar.gz -C $REMOTE_DIR"
install+="; python3 -m venv $REMOTE_VENV; $REMOTE_VENV/bin/pip install -q --upgrade pip"
install+="; cd $REMOTE_DIR && $REMOTE_VENV/bin/pip install -q -e '.[tpu]'"
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
