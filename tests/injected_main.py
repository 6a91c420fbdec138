"""`python tests/injected_main.py [--events=LOG] ARGS...` runs `python -m iml_jax.main ARGS...` with faults injected
from outside: production code has no hook for them.

`IML_JAX_FAULT=<phase>:<n>[:TERM]` kills the process with SIGKILL (or sends it SIGTERM) the n-th time it reaches
`phase`. Phases, each where the wrapped function returns:
  start             our SIGTERM handler installed, before flags, config, libraries and jax.distributed
  train_step        a train step dispatched
  eval              an evaluation appended to a stage's eval.jsonl (process 0 only: it writes them)
  checkpoint_saved  a checkpoint saved (digest included)
  stage_done        a stage's DONE marker written
  report            results.csv written, summary.json not yet
`--events=LOG` writes to LOG, one a line as they happen, each phase reached and each call of
jax.experimental.multihost_utils' cross-process collectives (tests/test_distributed.py counts the collectives
between steps)."""

import collections
import dataclasses
import functools
import os
import runpy
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's iml_jax

from jax.experimental import multihost_utils  # noqa: E402

from iml_jax import preemption, run_report, stage  # noqa: E402

PHASES = ("start", "train_step", "eval", "checkpoint_saved", "stage_done", "report")
COLLECTIVES = ("process_allgather", "broadcast_one_to_all", "sync_global_devices")


class Injector:
  def __init__(self, spec: str | None, events):
    self.events, self.reached = events, collections.Counter()
    self.phase, self.count, self.signal = None, 0, signal.SIGKILL
    if spec:
      self.phase, count, *how = spec.split(":")
      if self.phase not in PHASES:
        raise SystemExit(f"IML_JAX_FAULT={spec}: the phase must be one of {PHASES}")
      self.count, self.signal = int(count), signal.SIGTERM if how == ["TERM"] else signal.SIGKILL

  def log(self, event: str) -> None:
    if self.events:
      self.events.write(f"{event}\n")

  def reach(self, phase: str) -> None:
    self.log(phase)
    self.reached[phase] += 1
    if phase == self.phase and self.reached[phase] == self.count:
      os.kill(os.getpid(), self.signal)

  def after(self, phase: str, function, when=lambda *args: True):
    """`function`, reaching `phase` after each call whose arguments satisfy `when`."""

    @functools.wraps(function)
    def call(*args, **kwargs):
      result = function(*args, **kwargs)
      if when(*args):
        self.reach(phase)
      return result

    return call

  def install(self) -> None:
    preemption.install_sigterm_handler = self.after("start", preemption.install_sigterm_handler)
    prepare = stage.prepare_stage
    stage.prepare_stage = lambda *args: self._with_counted_step(prepare(*args))
    stage.append_jsonl = self.after("eval", stage.append_jsonl, lambda path, records: path.endswith("eval.jsonl"))
    stage.StageCheckpoints.save = self.after("checkpoint_saved", stage.StageCheckpoints.save)
    stage.mark_done = self.after("stage_done", stage.mark_done)
    run_report.atomic_write_text = self.after(
      "report", run_report.atomic_write_text, lambda path, text: path.endswith("results.csv")
    )
    for name in COLLECTIVES:
      collective = getattr(multihost_utils, name)
      setattr(multihost_utils, name, self._logged(name, collective))

  def _with_counted_step(self, prepared):
    return dataclasses.replace(prepared, train_step=self.after("train_step", prepared.train_step))

  def _logged(self, name: str, function):
    @functools.wraps(function)
    def call(*args, **kwargs):
      self.log(name)
      return function(*args, **kwargs)

    return call


def main() -> None:
  events = None
  if len(sys.argv) > 1 and sys.argv[1].startswith("--events="):
    events = open(sys.argv.pop(1).partition("=")[2], "w", buffering=1)  # line-buffered: complete at exit 143
  Injector(os.environ.get("IML_JAX_FAULT"), events).install()
  runpy.run_module("iml_jax.main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
