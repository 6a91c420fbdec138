#!/usr/bin/env bash
# Runs on each TPU worker (setup.sh calls it from the unpacked code directory): installs uv from PyPI into the
# user's ~/.local with the image's python3 (3.10 on the Ubuntu 22.04 TPU images; the system Python is
# not otherwise touched), lets uv provide Python 3.11 (a managed interpreter when the image has none), creates
# ~/iml-venv with it and installs this code directory into it with the given extra (default tpu).
# Usage: bash ~/iml-jax/launch/worker_setup.sh [--extra=tpu] [--venv=~/iml-venv]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

UV_VERSION=0.13.9
PYTHON_VERSION=3.11
EXTRA=tpu
VENV="$HOME/iml-venv"
for arg in "$@"; do
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --extra=*) EXTRA="${arg#*=}" ;;
    --venv=*) VENV="${arg#*=}" ;;
    *) die "unknown flag $(quote "$arg")" ;;
  esac
done
code_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

uv="$HOME/.local/bin/uv"
if [[ "$("$uv" --version 2>/dev/null)" != "uv $UV_VERSION"* ]]; then
  # Ubuntu 24.04 images mark the system Python as externally managed; 22.04's pip lacks that flag.
  python3 -m pip install -q --user "uv==$UV_VERSION" 2>/dev/null ||
    python3 -m pip install -q --user --break-system-packages "uv==$UV_VERSION"
fi
"$uv" venv -q --clear --python "$PYTHON_VERSION" "$VENV"
target="$code_dir"
if [[ -n $EXTRA ]]; then target="${code_dir}[$EXTRA]"; fi
"$uv" pip install -q --python "$VENV/bin/python" -e "$target" -c "$code_dir/constraints.txt"
"$VENV/bin/python" -c "import sys, iml_jax; print('iml-jax ready:', sys.version.split()[0], iml_jax.__file__)"
