#!/usr/bin/env bash
# Shared by the launch scripts: common flags, dry-run, quoting. Sourced, not run.
# Every user value reaches gcloud as one argument; remote commands quote each value with printf %q.
set -euo pipefail

NAME="${IML_TPU_NAME:-}"
ZONE="${IML_TPU_ZONE:-}"
PROJECT="${IML_TPU_PROJECT:-}"
DRY_RUN=0
# Paths on the workers, used by the scripts that source this file; the worker's shell expands the ~.
# REMOTE_DIR holds only code: setup.sh replaces it, so run outputs never go there (worker_run.sh refuses).
# shellcheck disable=SC2034,SC2088
REMOTE_DIR='~/iml-jax' REMOTE_VENV='~/iml-venv' REMOTE_LOG='~/iml-run.log'
# Seconds between two looks at a resource that is still changing state (tests set it to 0).
# shellcheck disable=SC2034
POLL_SECONDS="${IML_TPU_POLL_SECONDS:-30}"

# The script's header comment (its description and usage), for --help.
usage() {
  sed -n '2,/^[^#]/{/^#/!q;/^# shellcheck/d;s/^# \{0,1\}//;p}' "$0"
}

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

# One shell word per argument, safe to paste into a shell or to embed in a remote command.
quote() {
  local out
  printf -v out '%q ' "$@"
  echo "${out% }"
}

# Runs a command, or with --dry_run prints it (quoted) instead.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    quote "$@"
  else
    "$@"
  fi
}

# Parses --name=, --zone=, --project=, --dry_run, --help; returns 1 for any other argument.
common_flag() {
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --name=*) NAME="${1#*=}" ;;
    --zone=*) ZONE="${1#*=}" ;;
    --project=*) PROJECT="${1#*=}" ;;
    --dry_run) DRY_RUN=1 ;;
    *) return 1 ;;
  esac
}

# The flags common_flag took, to pass on to another launch script.
common_args() {
  COMMON_ARGS=(--name="$NAME" --zone="$ZONE")
  if [[ -n $PROJECT ]]; then COMMON_ARGS+=(--project="$PROJECT"); fi
  if [[ $DRY_RUN == 1 ]]; then COMMON_ARGS+=(--dry_run); fi
}

require_name_and_zone() {
  [[ -n $NAME ]] || die "--name=<TPU VM name> is required (or set IML_TPU_NAME)"
  [[ -n $ZONE ]] || die "--zone=<zone, e.g. us-central2-b> is required (or set IML_TPU_ZONE)"
}

# gcloud compute tpus <args> in the chosen zone (and project).
tpus() {
  local scope=(--zone="$ZONE")
  if [[ -n $PROJECT ]]; then scope+=(--project="$PROJECT"); fi
  run gcloud compute tpus "$@" "${scope[@]}"
}

# Runs one shell command line on every worker of the TPU VM.
on_all_workers() {
  tpus tpu-vm ssh "$NAME" --worker=all --command="$1"
}

# The TPU software (runtime) version Google documents for an accelerator type's generation
# (https://cloud.google.com/tpu/docs/runtimes, "PyTorch and JAX"; launch/README.md has the table).
runtime_version_for() {
  case "$1" in
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) die "--accelerator=$(quote "$1"): no known runtime version for this type; pass --version=" ;;
  esac
}
