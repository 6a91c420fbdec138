"""Preemption (SIGTERM) handling.

TPU VMs are preempted with SIGTERM, which the step loop honours at a step boundary: it saves a checkpoint and the
process exits with status 143. One process: `install_sigterm_handler` sets a flag, read after each step. Under
jax.distributed, JAX's own SIGTERM handler replaces ours: the process that receives it posts a preemption notice
to the coordination service, and the processes agree on a step in the background (JAX's preemption sync point),
so all of them checkpoint the same step and stop, within about a second (JAX polls for the signal once a
second), with no collective per step. When a stage starts and after its first step, one all-gather each shares
what the sync point misses: a SIGTERM our handler caught before jax.distributed started, a notice posted between
stages.
"""

import signal

PREEMPTED_EXIT_STATUS = 143  # 128 + SIGTERM, as if the signal had ended the process: the run is not finished
_sigterm_received = False  # set by our handler: a one-process run, or a multi-host one before jax.distributed
_NOTICE_KEY = "RECEIVED_PREEMPTION_NOTICE"  # where JAX's preemption sync manager posts a notice (its C++ source)


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


def stop_requested(step: int, first: bool) -> bool:
  """Whether to checkpoint and stop after `step`; every process asks after the same steps, `first` after the
  first step a stage trains in this run.

  Under jax.distributed: JAX's preemption sync point, true at the same step on every process, the largest step
  any process had given it when the notice came plus one. It remembers only the last step given, by any caller:
  Orbax's CheckpointManager.save gives it the stage's step, so ours are the stage's steps too (a count of our
  own would be set back by each save, and a notice during a save synchronised on a step already passed). They
  start again with each stage, so a notice that came while a stage was prepared may be synchronised on the
  previous stage's steps, never reached: the first step asks every process whether a notice came (all-gather)."""
  import jax

  if not jax.distributed.is_initialized():
    return _sigterm_received
  from jax.experimental import multihost_utils

  reached = multihost_utils.reached_preemption_sync_point(step)
  asked = first and _asked_anywhere()  # `first` is the same on every process: all or none join the all-gather
  return reached or asked


def stop_requested_before_stage() -> bool:
  """Whether a SIGTERM while starting up or between stages ends the run before the next stage starts; under
  jax.distributed the same answer on every process (one all-gather)."""
  return _asked_anywhere()


def _asked_anywhere() -> bool:
  """Whether any process was asked to stop (one all-gather on several processes)."""
  import jax

  if jax.process_count() == 1:
    return _asked_here()
  import numpy as np  # here, not above: main installs the handler before any library loads
  from jax.experimental import multihost_utils

  return bool(np.any(multihost_utils.process_allgather(np.array(_asked_here()))))


def _asked_here() -> bool:
  """Our handler caught SIGTERM, or (under jax.distributed) some process posted a preemption notice."""
  import jax
  from jax._src import distributed

  if _sigterm_received or not jax.distributed.is_initialized():
    return _sigterm_received
  try:
    distributed.global_state.client.key_value_try_get(_NOTICE_KEY)
  except jax.errors.JaxRuntimeError as err:
    if "NOT_FOUND" in str(err):
      return False
    raise
  return True
