"""Preemption (SIGTERM) handling and the fault-injection hook the resume tests use.

TPU VMs are preempted with SIGTERM: `install_sigterm_handler` turns it into a request that the step loop
honours at the next step boundary (save a checkpoint, exit with status 143). All processes of a multi-host
run agree on the request, so they checkpoint together.

`IML_JAX_FAULT=<phase>:<n>[:TERM]` kills this process with SIGKILL (or sends it SIGTERM) the n-th time it
reaches `phase` — a test hook, inert unless the variable is set. Phases: start, train_step, eval, checkpoint_saved,
stage_done, report.
"""

import collections
import os
import signal

import numpy as np

PREEMPTED_EXIT_STATUS = 143  # 128 + SIGTERM, as if the signal had ended the process: the run is not finished
PHASES = ("start", "train_step", "eval", "checkpoint_saved", "stage_done", "report")
_reached: collections.Counter = collections.Counter()
_sigterm_received = False


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint of `step` has been saved (None: it arrived before the stage started)."""

  def __init__(self, label: str, step: int | None):
    where = f"before {label} started" if step is None else f"at step {step} of {label}; its checkpoint is saved"
    super().__init__(f"preempted (SIGTERM) {where}: rerun the same command to resume")


def install_sigterm_handler() -> None:
  def request_stop(signum, frame):
    del signum, frame
    global _sigterm_received
    _sigterm_received = True

  signal.signal(signal.SIGTERM, request_stop)


def stop_requested() -> bool:
  """Whether any process received SIGTERM (a collective across processes of a multi-host run)."""
  import jax

  if jax.process_count() == 1:
    return _sigterm_received
  from jax.experimental import multihost_utils

  return bool(np.any(multihost_utils.process_allgather(np.array(_sigterm_received))))


def reached(phase: str) -> None:
  """The fault-injection hook: acts only when IML_JAX_FAULT names this phase and occurrence."""
  spec = os.environ.get("IML_JAX_FAULT")
  if not spec:
    return
  name, count, *how = spec.split(":")
  if name not in PHASES:
    raise ValueError(f"IML_JAX_FAULT={spec}: the phase must be one of {PHASES}")
  if name != phase:
    return
  _reached[phase] += 1
  if _reached[phase] == int(count):
    os.kill(os.getpid(), signal.SIGTERM if how == ["TERM"] else signal.SIGKILL)
