#!/usr/bin/env bash
# Runs on each TPU worker (run.sh calls it): resolves the workdir here (~ and relative paths against this
# worker's $HOME; gs:// URLs as given), refuses a workdir inside the code directory (setup.sh replaces it),
# and starts `python -m iml_jax.main --distributed` from the code directory in the background.
# Usage: bash ~/iml-jax/launch/worker_run.sh --config=configs/x.py[:args] --workdir=DIR [--venv=~/iml-venv]
#                                            [--log=~/iml-run.log] [-- --config.field=value ...]
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CONFIG=""
WORKDIR=""
VENV="$HOME/iml-venv"
LOG="$HOME/iml-run.log"
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --config=*) CONFIG="${1#*=}" ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --venv=*) VENV="${1#*=}" ;;
    --log=*) LOG="${1#*=}" ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown flag $(quote "$1")" ;;
  esac
  shift
done
[[ -n $CONFIG && -n $WORKDIR ]] || die "--config= and --workdir= are required"
code_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# shellcheck disable=SC2088  # the patterns match a literal ~, as the user typed it
case "$WORKDIR" in
  gs://*) ;;
  "~") WORKDIR="$HOME" ;;
  "~/"*) WORKDIR="$HOME/${WORKDIR#"~/"}" ;;
  /*) ;;
  *) WORKDIR="$HOME/$WORKDIR" ;;
esac
if [[ $WORKDIR != gs://* ]]; then
  WORKDIR="$(realpath -m "$WORKDIR")"
  if [[ $WORKDIR == "$code_dir" || $WORKDIR == "$code_dir"/* ]]; then
    die "on $(hostname): --workdir=$WORKDIR is inside the code directory $code_dir, which setup.sh replaces"
  fi
fi

cd "$code_dir"
nohup "$VENV/bin/python" -m iml_jax.main --config="$CONFIG" --workdir="$WORKDIR" --distributed "${EXTRA[@]}" \
  > "$LOG" 2>&1 < /dev/null &
echo "$(hostname): started in $WORKDIR (log $LOG)"
