"""`python tests/counted_main.py LOG ARGS...` runs `python -m iml_jax.main ARGS...` and writes to LOG, one a line as
they happen, the fault-hook phases it reaches (faults.reached: start, train_step, eval, checkpoint_saved, ...) and
its calls of jax.experimental.multihost_utils' cross-process collectives: tests/test_distributed.py counts the
collectives between steps."""

import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's iml_jax

from iml_jax import faults  # noqa: E402

COLLECTIVES = ("process_allgather", "broadcast_one_to_all", "sync_global_devices")


def main() -> None:
  log = open(sys.argv.pop(1), "w", buffering=1)  # line-buffered: complete when the run exits with 143
  reached = faults.reached

  def logged(name, function):
    def call(*args, **kwargs):
      log.write(f"{name}\n")
      return function(*args, **kwargs)

    return call

  def reached_and_logged(phase):
    if phase == "start":  # main imported jax (not before: --host_malloc must run first)
      from jax.experimental import multihost_utils

      for name in COLLECTIVES:
        setattr(multihost_utils, name, logged(name, getattr(multihost_utils, name)))
    log.write(f"{phase}\n")
    reached(phase)

  faults.reached = reached_and_logged
  runpy.run_module("iml_jax.main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
