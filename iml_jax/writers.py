"""Metric writers: JSONL always, TensorBoard event files (tensorboardX, no TensorFlow); process 0 only."""
import json
import os

import jax
from tensorboardX import SummaryWriter


class MetricWriter:

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tensorboard_dir = os.path.join(workdir, "tensorboard") if tensorboard else None
    self._tensorboard: dict[str, SummaryWriter] = {}

  def write(self, run: str, step: int, scalars: dict[str, float], **fields) -> None:
    """One JSONL record and one TensorBoard scalar per value, under the run's own event file."""
    if not self.enabled:
      return
    with open(self.path, "a") as handle:
      handle.write(json.dumps({"run": run, "step": step, **fields, **scalars}) + "\n")
    if self.tensorboard_dir is None:
      return
    if run not in self._tensorboard:
      self._tensorboard[run] = SummaryWriter(os.path.join(self.tensorboard_dir, run))
    for name, value in scalars.items():
      self._tensorboard[run].add_scalar(name, value, step)
    self._tensorboard[run].flush()

  def close(self) -> None:
    for writer in self._tensorboard.values():
      writer.close()
    self._tensorboard.clear()
