"""Seeds × stages orchestration: read the config into its specs, guard the workdir, run every stage, then report.

Layout of a workdir:
  config.json  metrics.jsonl  tensorboard/  results.csv  summary.json  plots/
  seed_<S>/tokenizer.json
  seed_<S>/<stage>/                 stages before the first one that trains stage-2 entities (run once)
  seed_<S>/s2seed_<K>/<stage>/      that stage and later ones, once per stage-2 seed
Each stage directory gets DONE when finished; rerunning the command skips finished stages and
resumes the others from their latest checkpoint.
"""

import contextlib
import json
import os
from typing import Iterator

import jax
from tqdm import tqdm

from iml_jax import config_blocks, io_utils, run_report, sharding, specs
from iml_jax.data import tasks
from iml_jax.errors import IMLError
from iml_jax.io_utils import atomic_write_json
from iml_jax.models import from_config, registry
from iml_jax.stage import ProgramCache, SeedContext, run_stage
from iml_jax.workdir import plan_stage_runs, tokenizer_path
from iml_jax.workdir_lock import LOCK_FILE, workdir_lock
from iml_jax.writers import MetricWriter

# Fields that change how a run is executed or shown, never its results.
_NOT_RESULT_FIELDS = (
  "progress_bar",
  "log_every",
  "checkpoint.max_to_keep",
  "checkpoint.every_steps",
  "eval.batch_size",
  "eval.prompt_bucket",
  "tensorboard",
  "analysis",
  "wandb",
  "study",
  "deviations",
)


def load_config(spec: str):
  """The config of `path[:arg]` (e.g. configs/default.py:tiny), as `--config=` would load it (unlocked)."""
  path, _, arg = spec.partition(":")
  return config_blocks.config_module(path).get_config(arg or None)


def check_batch_layout(experiment: specs.Experiment, mesh) -> None:
  devices = sharding.data_parallel_size(mesh)
  for name, stage in experiment.stages.items():
    micro = stage.batch_size // stage.grad_accum
    if micro % devices:
      raise IMLError(
        f"config field stages.{name}.batch_size = {stage.batch_size} (micro-batch {micro}) is not "
        f"divisible by the {devices} data-parallel devices of mesh.shape = {tuple(mesh.shape.values())}"
      )
  if experiment.eval.batch_size % devices:
    raise IMLError(
      f"config field eval.batch_size = {experiment.eval.batch_size} is not divisible by the {devices} "
      "data-parallel devices"
    )


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def create_workdir(workdir: str) -> None:
  io_utils.check_supported(workdir)
  try:
    io_utils.makedirs(workdir)
  except OSError as err:
    raise IMLError(f"workdir {workdir} cannot be created ({err.strerror})") from None
  if not io_utils.is_remote(workdir) and not os.access(workdir, os.W_OK):
    raise IMLError(f"workdir {workdir} is not writable")


# What the refusal of a workdir holding another config tells main's user to do.
NEW_WORKDIR_OR_ALLOW_CHANGE = "Use a new --workdir (or --allow_config_change to continue it with the new config)"


def guard_workdir(
  config, workdir: str, allow_config_change: bool = False, remedy: str = NEW_WORKDIR_OR_ALLOW_CHANGE
) -> None:
  """Refuses a workdir that holds a run of a different config, saying what differs and then `remedy` (unless
  `allow_config_change`, which says what changed and carries on: finished stages are kept); saves the config."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json_best_effort())
  if io_utils.exists(path):
    try:
      saved = io_utils.read_json(path)
    except IMLError as err:
      raise IMLError(f"{err}; move it away if this workdir holds no run") from None
    old, new = _flatten(saved), _flatten(current)
    differing = sorted(
      k for k in set(old) | set(new) if old.get(k) != new.get(k) and not k.startswith(_NOT_RESULT_FIELDS)
    )
    if differing:
      shown = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in differing[:8])
      if not allow_config_change:
        raise IMLError(f"workdir {workdir} holds a run of a different config; differing fields: {shown}. {remedy}")
      if jax.process_index() == 0:
        print(f"workdir {workdir}: continuing with a changed config ({shown}); finished stages are kept")
  if jax.process_index() == 0:
    atomic_write_json(path, current)


@contextlib.contextmanager
def seed_contexts(
  config, workdir: str, allow_config_change: bool = False, remedy: str = NEW_WORKDIR_OR_ALLOW_CHANGE
) -> Iterator[tuple[specs.Experiment, Iterator[SeedContext]]]:
  """Reads and checks `config` into its specs, locks the workdir (workdir_lock.py) and guards it, all before
  anything else is written, then gives the specs and what every stage of each stage-1 seed shares, one seed at a
  time; the contexts share one metric writer. The lock and the writer are held until the block ends."""
  experiment = specs.Experiment.from_config(config)
  folder, pretrained = from_config.pretrained_model(experiment.model, experiment.data)
  mesh = sharding.make_mesh(experiment.mesh.shape)
  rules = sharding.rules_for(experiment.mesh.rules)
  check_batch_layout(experiment, mesh)
  fresh = not io_utils.listdir(workdir)  # [] also when it does not exist yet
  create_workdir(workdir)
  with workdir_lock(workdir), _emptied_on_early_failure(experiment, workdir, fresh), sharding.use_mesh(mesh, rules):
    if jax.process_index() == 0:
      io_utils.remove_temporaries(workdir)  # strays of a killed run; the lock says no one else writes here
    guard_workdir(config, workdir, allow_config_change, remedy)
    devices = sharding.data_parallel_size(mesh)
    per_device = ", ".join(
      f"{name} {stage.batch_size // stage.grad_accum // devices}" for name, stage in experiment.stages.items()
    )
    print(
      f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local "
      f"{jax.devices()[0].platform} devices of {jax.device_count()}, mesh {dict(mesh.shape)}, rules "
      f"{experiment.mesh.rules}; per-device batch: {per_device}",
      flush=True,
    )

    def contexts():
      programs = ProgramCache()
      for seed in range(experiment.seed, experiment.seed + experiment.n_seeds):
        task = tasks.for_seed(experiment, seed, folder)
        tokenizer = task.tokenizer(tokenizer_path(workdir, seed))
        model_cfg = from_config.model_config(
          experiment.model, experiment.data, experiment.mesh, tokenizer, pretrained, folder
        )
        model = registry.build(model_cfg)
        yield SeedContext(experiment, seed, task, tokenizer, model, mesh, rules, writer, folder, programs)

    writer = MetricWriter(
      workdir, tensorboard=experiment.tensorboard, hparams=_flatten(config.to_dict()), wandb_spec=experiment.wandb
    )
    try:
      yield experiment, contexts()
    finally:
      writer.close()


@contextlib.contextmanager
def _emptied_on_early_failure(experiment: specs.Experiment, workdir: str, fresh: bool):
  """A run that fails in a workdir it found empty, before its first checkpoint, leaves it empty again: no
  config.json refuses the corrected command, no tokenizer of the failed config is reused."""
  try:
    yield
  except Exception:
    if fresh and jax.process_index() == 0 and not _holds_checkpoints(experiment, workdir):
      for path in (os.path.join(workdir, name) for name in io_utils.listdir(workdir) if name != LOCK_FILE):
        io_utils.rmtree(path) if io_utils.isdir(path) else io_utils.remove(path)
    raise


def _holds_checkpoints(experiment: specs.Experiment, workdir: str) -> bool:
  seeds = range(experiment.seed, experiment.seed + experiment.n_seeds)
  runs = [run for seed in seeds for run in plan_stage_runs(experiment, workdir, seed)]
  return any(io_utils.listdir(os.path.join(run.directory, "checkpoints")) for run in runs)


def run(config, workdir: str, allow_config_change: bool = False) -> dict:
  """Runs the experiment `config` (a ConfigDict, as configs/*.py build it) in `workdir`; its summary."""
  with seed_contexts(config, workdir, allow_config_change) as (experiment, contexts):
    runs_per_seed = len(plan_stage_runs(experiment, workdir, experiment.seed))
    progress = tqdm(
      total=experiment.n_seeds * runs_per_seed,
      unit="stage",
      position=0,
      disable=jax.process_index() != 0 or not experiment.progress_bar,
    )  # above the stages' own bars
    for number, ctx in enumerate(contexts, 1):
      for index, stage_run in enumerate(plan_stage_runs(experiment, workdir, ctx.seed), 1):
        progress.set_description(
          f"seed {number}/{experiment.n_seeds}, stage {index}/{runs_per_seed} ({stage_run.label})"
        )
        run_stage(ctx, stage_run)
        progress.update(1)
    progress.close()
    return run_report.write_report(experiment, workdir, require_complete=True)
