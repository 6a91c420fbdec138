"""The on-disk layout of a workdir, in one place; everything that finds, reads or marks a run's files uses it.

  WORKDIR/config.json                   the run's config (`guard_workdir` refuses another config here)
  WORKDIR/LOCK                          the running run's host and pid (workdir_lock.py)
  WORKDIR/sweep.json                    a sweep directory's plan instead; its runs in WORKDIR/<values>/
  WORKDIR/seed_S/tokenizer.json         the tokenizer of stage-1 seed S
  WORKDIR/seed_S/<stage>/               stages before the stage-2 split (one per stage-1 seed)
  WORKDIR/seed_S/s2seed_T/<stage>/      stages from the split on, one per stage-2 seed T
      checkpoints/  eval.jsonl  grad_alignment.jsonl  predictions.jsonl  probes.json  DONE (written last)
  WORKDIR/results.csv  summary.json  report.md  plots/  metrics.jsonl  tensorboard/

Reporting modules import this, not the training code: reading a workdir needs neither Orbax nor Flax.
"""

import dataclasses
import hashlib
import os
from typing import NoReturn

import ml_collections

from iml_jax import io_utils
from iml_jax.data.tasks import score_of, uses_stage2_split
from iml_jax.errors import IMLError
from iml_jax.io_utils import read_jsonl

CONFIG_FILE = "config.json"
PLAN_FILE = "sweep.json"
DONE_FILE = "DONE"
TOKENIZER_FILE = "tokenizer.json"
# A finished stage's results; DONE records their digests, and nothing is read from a stage whose files differ.
VOUCHED_FILES = ("eval.jsonl", "predictions.jsonl")
KEY_COLUMNS = ("seed", "seed_stage2", "stage", "epoch", "global_epoch", "subset")


@dataclasses.dataclass(frozen=True)
class StageRun:
  name: str
  index: int
  seed_stage2: int
  directory: str
  init_from: str | None  # the previous stage's directory: its final parameters start this stage
  order_key: tuple[int, ...]
  label: str  # the directory relative to the workdir, e.g. seed_0/s2seed_0/stage2


def plan_stage_runs(experiment, workdir: str, seed: int) -> list[StageRun]:
  """Every stage run of one stage-1 seed of `experiment` (specs.Experiment), in execution order, each knowing
  where it starts from."""
  names = list(experiment.stage_names)
  branch = next(
    (i for i, n in enumerate(names) if uses_stage2_split(experiment.task, experiment.stages[n].train_subset)),
    len(names),
  )
  runs, previous = [], None
  for index in range(branch):
    label = os.path.join(f"seed_{seed}", names[index])
    runs.append(StageRun(names[index], index, 0, os.path.join(workdir, label), previous, (seed, 0, index), label))
    previous = runs[-1].directory
  for seed_stage2 in range(experiment.n_seeds_stage2) if branch < len(names) else ():
    start = previous
    for index in range(branch, len(names)):
      label = os.path.join(f"seed_{seed}", f"s2seed_{seed_stage2}", names[index])
      runs.append(
        StageRun(
          names[index], index, seed_stage2, os.path.join(workdir, label), start, (seed, seed_stage2, index), label
        )
      )
      start = runs[-1].directory
  return runs


def is_done(directory: str) -> bool:
  return io_utils.exists(os.path.join(directory, DONE_FILE))


def read_eval_records(directory: str) -> list[dict]:
  """Evaluation records of a stage; a re-evaluated (epoch, set) keeps its latest record."""
  latest = {(r["epoch"], r["subset"]): r for r in read_jsonl(os.path.join(directory, "eval.jsonl"))}
  return [latest[k] for k in sorted(latest)]


def read_alignment_records(directory: str) -> list[dict]:
  """Gradient-alignment records of a stage; a re-measured (epoch, set) keeps its latest record."""
  latest = {(r["epoch"], r["set"]): r for r in read_jsonl(os.path.join(directory, "grad_alignment.jsonl"))}
  return [latest[k] for k in sorted(latest)]


def read_done(directory: str) -> dict:
  """A finished stage's verified DONE marker: {"step": final step, "epochs": epochs trained, "sha256": {file:
  digest}}. IMLError, naming the file and what to delete, when the marker or a file it vouches for is damaged."""
  path = os.path.join(directory, DONE_FILE)
  try:
    done = io_utils.read_json(path)
  except IMLError:
    done = None
  if not (
    isinstance(done, dict)
    and isinstance(done.get("step"), int)
    and done["step"] >= 1
    and isinstance(done.get("sha256", {}), dict)
  ):
    damaged_stage(directory, f"its marker {path} is not a finished stage's record")
  # A marker without digests was written before they were recorded: there is nothing to check it against.
  for name, digest in done.get("sha256", {}).items():
    file = os.path.join(directory, name)
    if not io_utils.exists(file):
      damaged_stage(directory, f"{file} is missing")
    if _sha256(file) != digest:
      damaged_stage(directory, f"{file} differs from the file the stage finished with (its digest is in {path})")
  return done


def mark_done(directory: str, step: int, epochs: int) -> None:
  """Marks a stage finished, vouching for its results as they are now."""
  digests = {
    name: _sha256(os.path.join(directory, name))
    for name in VOUCHED_FILES
    if io_utils.exists(os.path.join(directory, name))
  }
  io_utils.atomic_write_json(os.path.join(directory, DONE_FILE), {"step": step, "epochs": epochs, "sha256": digests})


def _sha256(path: str) -> str:
  return hashlib.sha256(io_utils.read_bytes(path)).hexdigest()


def damaged_stage(directory: str, what: str) -> NoReturn:
  raise IMLError(
    f"finished stage {directory} is damaged: {what}. Delete the directory {directory} and rerun the "
    "same command: the stage is recomputed (same data order and initialisation, so the same results)"
  )


def tokenizer_path(workdir: str, seed: int) -> str:
  return os.path.join(workdir, f"seed_{seed}", TOKENIZER_FILE)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in `workdir` (OSError when there is none, IMLError when it is not JSON)."""
  return ml_collections.ConfigDict(io_utils.read_json(os.path.join(workdir, CONFIG_FILE)))


def holds_sweep(workdir: str) -> bool:
  return io_utils.exists(os.path.join(workdir, PLAN_FILE))


def load_plan(workdir: str) -> dict:
  path = os.path.join(workdir, PLAN_FILE)
  try:
    return io_utils.read_json(path)
  except (OSError, IMLError) as err:
    raise IMLError(f"{path}: no readable sweep plan ({err}); is {workdir} a sweep directory?") from None


def is_finished(experiment, run_dir: str) -> bool:
  """Every stage of every seed DONE and the report written (a report of a partial run is not enough)."""
  return io_utils.exists(os.path.join(run_dir, "summary.json")) and all(
    is_done(r.directory)
    for seed in range(experiment.seed, experiment.seed + experiment.n_seeds)
    for r in plan_stage_runs(experiment, run_dir, seed)
  )


def result_columns(task: str) -> tuple[str, ...]:
  return KEY_COLUMNS + score_of(task).fields


def collect_rows(experiment, workdir: str) -> list[dict]:
  """The tidy rows of a run's evaluations (results.csv): one per seed, stage-2 seed, stage, epoch and subset,
  `global_epoch` counting the epochs of all earlier stages."""
  fields = score_of(experiment.task).fields
  offsets, total = {}, 0
  for name, stage in experiment.stages.items():
    offsets[name] = total
    total += stage.epochs
  rows = []
  for seed in range(experiment.seed, experiment.seed + experiment.n_seeds):
    for run in plan_stage_runs(experiment, workdir, seed):
      if is_done(run.directory):
        read_done(run.directory)  # a finished stage's records are read only when DONE vouches for them
      for record in read_eval_records(run.directory):
        rows.append(
          {
            "seed": seed,
            "seed_stage2": run.seed_stage2,
            "stage": run.name,
            "epoch": record["epoch"],
            "global_epoch": offsets[run.name] + record["epoch"],
            "subset": record["subset"],
            **{f: record[f] for f in fields},
          }
        )
  return rows
