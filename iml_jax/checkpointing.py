"""Orbax checkpoints of one stage: the only module that imports orbax.

Each step holds three items — `params`, `opt_state` (StandardSave) and `meta` (JSON) — so the next
stage can restore `params` alone. Orbax writes to a temporary directory and renames it when complete,
so a killed save never leaves a checkpoint that `latest_step` would return; the next run, the workdir's only
writer (iml_jax/workdir_lock.py), deletes such temporary directories when it opens the stage. Restores go straight
into the shardings of the current mesh (a checkpoint written on 8 devices restores on 1).

Beside each step, `<step>.sha256.json` holds the SHA-256 of every file Orbax wrote for it; a restore checks them
first, so a damaged checkpoint is an error naming the file, never a silently different model. The digest file is
written last, so a step without one (a process killed between Orbax's rename and the digest, or a checkpoint saved
before digests were kept) is unfinished: a resumed stage discards it (`discard_unverified`) and a restore refuses it.
"""

import contextlib
import hashlib
import logging
import os
import re

import jax
import orbax.checkpoint as ocp

from iml_jax import io_utils
from iml_jax.errors import IMLError


UNFINISHED_SAVE_MARK = ".orbax-checkpoint-tmp"  # in the name of a save's directory until its final rename
DIGESTS_SUFFIX = ".sha256.json"
FINISHED_SAVE_FILE = "_CHECKPOINT_METADATA"  # Orbax writes it into a step's directory as the save completes


def file_digests(directory: str) -> dict[str, str]:
  """SHA-256 of every file below `directory`, by path relative to it."""
  digests = {}
  for name in io_utils.listdir(directory):
    path = f"{directory}/{name}"
    if io_utils.isdir(path):
      digests.update({f"{name}/{inner}": digest for inner, digest in file_digests(path).items()})
    else:
      digests[name] = hashlib.sha256(io_utils.read_bytes(path)).hexdigest()
  return digests


class DamagedCheckpoint(IMLError):
  """A checkpoint file differs from the one saved (its digest): what the stage must do about it says the caller."""


class UnverifiedCheckpoint(DamagedCheckpoint):
  """A checkpoint without its digest file: its save was cut short, or it predates digests."""


# How tensorstore (under Orbax) reports an OS error: a ValueError whose text ends with the errno.
_TENSORSTORE_OS_ERROR = re.compile(r"\[os_error_code='(\d+)'\]")


def _save_failure(err: Exception) -> str | None:
  """Why a save failed, where the file system refused it (a full disk, a quota, a read-only mount); None for
  anything else (a bug, not the user's to fix)."""
  if isinstance(err, OSError):
    return err.strerror or str(err)
  found = _TENSORSTORE_OS_ERROR.search(str(err)) if isinstance(err, ValueError) else None
  if found:
    return os.strerror(int(found.group(1)))
  if isinstance(err, ValueError) and str(err).startswith("RESOURCE_EXHAUSTED"):
    return "resource exhausted: disk space or a quota"
  return None


class _ThreadErrorsUnlogged(logging.Filter):
  """Drops Orbax's log of an exception in one of its save threads (a traceback): the same exception is raised again
  in the thread that called save, which reports it (a full disk as one line)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "_SignalingThread.run() raised an exception" not in str(record.msg)


@contextlib.contextmanager
def _orbax_thread_errors_unlogged():
  absl_logger, unlogged = logging.getLogger("absl"), _ThreadErrorsUnlogged()
  absl_logger.addFilter(unlogged)
  try:
    yield
  finally:
    absl_logger.removeFilter(unlogged)


class StageCheckpoints:
  def __init__(self, directory: str, max_to_keep: int | None = None):
    self.directory = io_utils.absolute(directory)
    # Orbax would delete the oldest step inside save(), before the new step's digest exists: a kill in between would
    # leave no verified checkpoint at all. Steps beyond `max_to_keep` are pruned here, after the digest is written.
    self.max_to_keep = max_to_keep
    options = ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False)
    if jax.process_index() == 0:
      # Orbax's own clean-up option only runs with the next save, which a finished stage never makes. A step
      # directory without Orbax's metadata file is unfinished too: what a mount without atomic renames can leave.
      for name in io_utils.listdir(self.directory):
        if UNFINISHED_SAVE_MARK in name or (
          name.isdigit() and not io_utils.exists(f"{self.directory}/{name}/{FINISHED_SAVE_FILE}")
        ):
          io_utils.rmtree(f"{self.directory}/{name}")
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={
        "params": ocp.StandardCheckpointHandler(),
        "opt_state": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
      },
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def discard_unverified(self) -> list[int]:
    """Deletes the checkpoints that have no digest file, so the stage resumes from the latest one that has (or from
    its start) and saves their steps anew; their steps. Every process calls it (Orbax's delete synchronises them).
    Only for a stage being resumed: a finished stage's checkpoint is refused by `verify` instead, never deleted."""
    unverified = [step for step in self.manager.all_steps() if not io_utils.exists(self._digests_path(step))]
    for step in unverified:
      self.manager.delete(step)
    return sorted(unverified)

  def save(self, step: int, params, opt_state, meta: dict) -> None:
    """Writes step `step`; a failed write (e.g. a full disk) leaves the previous checkpoints as they were."""
    try:
      with _orbax_thread_errors_unlogged():
        self.manager.save(
          step,
          args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(meta),
          ),
          force=True,
        )
        self.manager.wait_until_finished()
      if jax.process_index() == 0:
        io_utils.atomic_write_json(self._digests_path(step), file_digests(f"{self.directory}/{step}"))
      if jax.process_count() > 1:  # every process sees the digest before any prunes or verifies
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"checkpoint digest {self.directory}/{step}")
      self._prune()
    except (OSError, ValueError) as err:
      reason = _save_failure(err)
      if reason is None:
        raise
      raise IMLError(
        f"saving checkpoint step {step} in {self.directory} failed ({reason}); "
        f"the earlier checkpoints are intact: free space and rerun to resume"
      ) from None

  def _prune(self) -> None:
    """Deletes all but the newest `max_to_keep` steps, and their digests: only once a newer step is verified."""
    steps = sorted(self.manager.all_steps())
    for old in steps[: -self.max_to_keep] if self.max_to_keep else []:
      self.manager.delete(old)
    if jax.process_index() == 0:
      kept = {str(s) for s in self.manager.all_steps()}
      for name in io_utils.listdir(self.directory):
        if name.endswith(DIGESTS_SUFFIX) and name[: -len(DIGESTS_SUFFIX)] not in kept:
          io_utils.remove(f"{self.directory}/{name}")

  def _digests_path(self, step: int) -> str:
    return f"{self.directory}/{step}{DIGESTS_SUFFIX}"

  def verify(self, step: int) -> None:
    """IMLError naming the first file of checkpoint `step` that differs from what was saved, or its missing
    digest file."""
    path = self._digests_path(step)
    if not io_utils.exists(path):
      raise UnverifiedCheckpoint(
        f"checkpoint {self.directory}/{step} has no digest file {path}: its save did not finish, so it cannot be "
        "checked"
      )
    saved, found = io_utils.read_json(path), file_digests(f"{self.directory}/{step}")
    for name in sorted(saved):
      if found.get(name) != saved[name]:
        raise DamagedCheckpoint(
          f"checkpoint file {self.directory}/{step}/{name} "
          f"{'is missing' if name not in found else 'differs from the file saved'}"
        )

  def _check_compatible(self, step: int, item: str, abstract) -> None:
    """A clear message when the stored tree does not fit the model the config describes (structure,
    shapes, dtypes)."""
    stored = self.manager.item_metadata(step)[item]
    if stored is None:
      raise IMLError(f"checkpoint {self.directory}/{step} has no readable {item}; it is damaged: move it away")
    expected = {
      jax.tree_util.keystr(k): (tuple(v.shape), str(v.dtype)) for k, v in jax.tree_util.tree_leaves_with_path(abstract)
    }
    found = {
      jax.tree_util.keystr(k): (tuple(v.shape), str(v.dtype)) for k, v in jax.tree_util.tree_leaves_with_path(stored)
    }
    if expected != found:
      missing = sorted(set(expected) - set(found))[:3]
      extra = sorted(set(found) - set(expected))[:3]
      differing = [
        f"{k}: stored {found[k][0]} {found[k][1]}, model {expected[k][0]} {expected[k][1]}"
        for k in sorted(set(expected) & set(found))
        if found[k] != expected[k]
      ][:3]
      raise IMLError(
        f"checkpoint {self.directory}/{step} ({item}) does not match the configured model: "
        f"missing {missing}, unexpected {extra}, shape/dtype mismatches {differing}"
      )

  def restore(self, step: int, abstract_params, abstract_opt_state) -> tuple:
    self.verify(step)
    self._check_compatible(step, "params", abstract_params)
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract_params),
        opt_state=ocp.args.StandardRestore(abstract_opt_state),
        meta=ocp.args.JsonRestore(),
      ),
    )
    return restored["params"], restored["opt_state"], restored["meta"]

  def restore_params(self, step: int, abstract_params):
    self.verify(step)
    self._check_compatible(step, "params", abstract_params)
    return self.manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract_params)))[
      "params"
    ]

  def close(self) -> None:
    self.manager.close()
