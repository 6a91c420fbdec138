"""Metric writers: JSONL always, TensorBoard event files (tensorboardX, no TensorFlow), Weights & Biases when
`wandb.project` is set (optional; never imported otherwise). Process 0 only. Hyper-parameters (the flattened
config) go to TensorBoard as a text summary and to W&B as the run config; config.json holds them too."""

import hashlib
import os
import sys

import jax

from iml_jax import io_utils
from iml_jax.errors import IMLError


class MetricWriter:
  def __init__(
    self, workdir: str, tensorboard: bool = True, hparams: dict | None = None, wandb_spec=None
  ):  # a specs.Wandb
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.tensorboard_dir = os.path.join(workdir, "tensorboard") if tensorboard else None
    self.hparams = hparams or {}
    self._tensorboard: dict = {}  # run -> tensorboardX.SummaryWriter
    self._purge_step: dict = {}  # run -> the first step a resumed run logs again
    self._wandb = None
    if self.enabled and wandb_spec is not None and wandb_spec.project:
      self._wandb = _start_wandb(workdir, wandb_spec, self.hparams)

  def restart(self, run: str, step: int) -> None:
    """Before `run` resumes from its checkpoint at step `step` (0: none, it starts over): a killed process may
    have logged steps after that checkpoint, which the resumed run logs again. Their records are dropped and
    TensorBoard hides their events (its purge step), so every step is in the logs once."""
    if not self.enabled:
      return
    replayed = lambda record: record["run"] == run and (step == 0 or record["step"] > step)  # noqa: E731
    if io_utils.drop_jsonl_records(self.path, replayed):
      self._purge_step[run] = step + 1 if step else 0

  def write(
    self, run: str, step: int, scalars: dict[str, float], timings: dict[str, float] | None = None, **fields
  ) -> None:
    """One JSONL record, one TensorBoard scalar per value under the run's own event file, one W&B log.
    `timings` (e.g. tokens/s) go to TensorBoard and W&B only: metrics.jsonl holds what a rerun reproduces."""
    if not self.enabled:
      return
    io_utils.append_jsonl(self.path, [{"run": run, "step": step, **fields, **scalars}])
    scalars = {**scalars, **(timings or {})}
    if self._wandb is not None:
      self._wandb.log({f"{run}/{name}": value for name, value in scalars.items()} | {f"{run}/step": step})
    if self.tensorboard_dir is None:
      return
    if run not in self._tensorboard:
      self._tensorboard[run] = _summary_writer_class()(
        os.path.join(self.tensorboard_dir, run), purge_step=self._purge_step.get(run)
      )
      if self.hparams:
        table = "\n".join(f"| {k} | {v} |" for k, v in sorted(self.hparams.items()))
        self._tensorboard[run].add_text("hparams", "| field | value |\n|---|---|\n" + table, 0)
    for name, value in scalars.items():
      self._tensorboard[run].add_scalar(name, value, step)
    self._tensorboard[run].flush()

  def close(self) -> None:
    for writer in self._tensorboard.values():
      writer.close()
    self._tensorboard.clear()
    if self._wandb is not None:
      self._wandb.finish()
      self._wandb = None


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported on first use and without torch: tensorboardX imports torch when it
  is installed only to accept torch tensors, which we never pass, and that import costs every run 3-5 s."""
  if "tensorboardX" in sys.modules or "torch" in sys.modules:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

    return SummaryWriter
  sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX handles
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
  finally:
    del sys.modules["torch"]
  return SummaryWriter


def _start_wandb(workdir: str, wandb_spec, hparams: dict):
  try:
    import wandb
  except ImportError:
    raise IMLError(
      f"config field wandb.project = {wandb_spec.project!r} needs the wandb package "
      "(pip install wandb), or leave wandb.project empty"
    ) from None
  # One W&B run per workdir, resumed by a rerun: the id is a function of the workdir's absolute path.
  # W&B keeps its files on a local disk: a bucket workdir leaves them in W&B's default directory.
  workdir = io_utils.absolute(workdir)
  run_id = hashlib.sha1(workdir.encode()).hexdigest()[:16]
  return wandb.init(
    project=wandb_spec.project,
    entity=wandb_spec.entity or None,
    mode=wandb_spec.mode,
    name=os.path.basename(workdir.rstrip("/")),
    id=run_id,
    resume="allow",
    dir=None if io_utils.is_remote(workdir) else workdir,
    config=hparams,
  )
