"""Orbax checkpoints of one stage: the only module that imports orbax.

Each step holds three items — `params`, `opt_state` (StandardSave) and `meta` (JSON) — so the next
stage can restore `params` alone. Orbax writes to a temporary directory and renames it when complete,
so a killed save never leaves a checkpoint that `latest_step` would return; the next run, the workdir's only
writer (iml_jax/workdir_lock.py), deletes such temporary directories when it opens the stage. Restores go straight
into the shardings of the current mesh (a checkpoint written on 8 devices restores on 1).
"""
import jax
import orbax.checkpoint as ocp

from iml_jax import io_utils
from iml_jax.errors import IMLError


UNFINISHED_SAVE_MARK = ".orbax-checkpoint-tmp"  # in the name of a save's directory until its final rename


class StageCheckpoints:

  def __init__(self, directory: str, max_to_keep: int | None = None):
    self.directory = io_utils.absolute(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    if jax.process_index() == 0:
      # Orbax's own clean-up option only runs with the next save, which a finished stage never makes.
      for name in io_utils.listdir(self.directory):
        if UNFINISHED_SAVE_MARK in name:
          io_utils.rmtree(f"{self.directory}/{name}")
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
        "params": ocp.StandardCheckpointHandler(), "opt_state": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, params, opt_state, meta: dict) -> None:
    """Writes step `step`; a failed write (e.g. a full disk) leaves the previous checkpoints as they were."""
    try:
      self.manager.save(step, args=ocp.args.Composite(
          params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state),
          meta=ocp.args.JsonSave(meta)), force=True)
      self.manager.wait_until_finished()
    except OSError as err:
      raise IMLError(f"saving checkpoint step {step} in {self.directory} failed ({err.strerror or err}); "
                     f"the earlier checkpoints are intact: free space and rerun to resume") from None

  def _check_compatible(self, step: int, item: str, abstract) -> None:
    """A clear message when the stored tree does not fit the model the config describes (structure,
    shapes, dtypes)."""
    stored = self.manager.item_metadata(step)[item]
    if stored is None:
      raise IMLError(f"checkpoint {self.directory}/{step} has no readable {item}; it is damaged: move it away")
    expected = {jax.tree_util.keystr(k): (tuple(v.shape), str(v.dtype))
                for k, v in jax.tree_util.tree_leaves_with_path(abstract)}
    found = {jax.tree_util.keystr(k): (tuple(v.shape), str(v.dtype))
             for k, v in jax.tree_util.tree_leaves_with_path(stored)}
    if expected != found:
      missing = sorted(set(expected) - set(found))[:3]
      extra = sorted(set(found) - set(expected))[:3]
      differing = [f"{k}: stored {found[k][0]} {found[k][1]}, model {expected[k][0]} {expected[k][1]}"
                   for k in sorted(set(expected) & set(found)) if found[k] != expected[k]][:3]
      raise IMLError(f"checkpoint {self.directory}/{step} ({item}) does not match the configured model: "
                     f"missing {missing}, unexpected {extra}, shape/dtype mismatches {differing}")

  def restore(self, step: int, abstract_params, abstract_opt_state) -> tuple:
    self._check_compatible(step, "params", abstract_params)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params),
        opt_state=ocp.args.StandardRestore(abstract_opt_state), meta=ocp.args.JsonRestore()))
    return restored["params"], restored["opt_state"], restored["meta"]

  def restore_params(self, step: int, abstract_params):
    self._check_compatible(step, "params", abstract_params)
    return self.manager.restore(step, args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params)))["params"]

  def close(self) -> None:
    self.manager.close()
