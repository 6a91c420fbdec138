"""Seeds × stages orchestration: validate, guard the workdir, run every stage, then report.

Layout of a workdir:
  config.json  metrics.jsonl  tensorboard/  results.csv  summary.json  plots/
  seed_<S>/tokenizer.json
  seed_<S>/<stage>/                 stages before the first one that trains stage-2 entities (run once)
  seed_<S>/s2seed_<K>/<stage>/      that stage and later ones, once per stage-2 seed
Each stage directory gets DONE when finished; rerunning the command skips finished stages and
resumes the others from their latest checkpoint.
"""

import contextlib
import functools
import json
import os
from typing import Iterator

import jax
from tqdm import tqdm

from iml_jax import config_blocks, io_utils, run_report, sharding, study_settings
from iml_jax.data import tasks
from iml_jax.errors import IMLError
from iml_jax.io_utils import atomic_write_json
from iml_jax.models import from_config, registry
from iml_jax.stage import ProgramCache, SeedContext, run_stage
from iml_jax.train import OPTIMIZERS, TRAINABLE
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


# Integer fields and their least valid value (array tasks decode nothing: eval.max_new_tokens is not theirs).
_AT_LEAST = {
  "seed": 0,
  "log_every": 1,
  "eval.batch_size": 1,
  "eval.prompt_bucket": 1,
  "checkpoint.max_to_keep": 0,
  "checkpoint.every_steps": 0,
}
_AT_LEAST_FOR_TEXT = {"eval.max_new_tokens": 1}


def validate(config) -> None:
  """Every check that can fail before a file is written."""
  array_model = tasks.array_model(config)
  for field, least in {**_AT_LEAST, **({} if array_model else _AT_LEAST_FOR_TEXT)}.items():
    value = functools.reduce(lambda node, key: node[key], field.split("."), config)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
      raise IMLError(f"config field {field} = {value!r}: expected an integer >= {least}")
  if config.model.name not in registry.MODELS:
    raise IMLError(f"config field model.name = {config.model.name!r}: expected one of {registry.MODELS}")
  if array_model != config.model.name and (array_model or from_config.array_inputs(config)):
    raise IMLError(
      f"config fields task = {config.task!r}, model.name = {config.model.name!r}: "
      + (
        f"task {config.task!r} needs model.name = {array_model!r}"
        if array_model
        else f"model {config.model.name!r} reads the arrays of another task; text tasks need a language model"
      )
    )
  if config.model.name == "t5" and not config.data.get("label_block_size", 0) >= 1:
    raise IMLError("config field data.label_block_size must be set (>= 1) for a seq2seq model: the target length")
  study_settings.deviations(config)  # an unknown `study` row is an error naming the field
  if config.n_seeds < 1 or config.n_seeds_stage2 < 1:
    raise IMLError(
      f"config fields n_seeds = {config.n_seeds}, n_seeds_stage2 = {config.n_seeds_stage2}: both must be >= 1"
    )
  if not config.stage_names:
    raise IMLError("config field stage_names is empty: list at least one stage")
  for name in config.stage_names:
    if name not in config.stages:
      raise IMLError(f"config field stage_names names {name!r}, but stages has only {sorted(config.stages)}")
    stage = config.stages[name]
    field = f"stages.{name}"
    if stage.epochs < 1:
      raise IMLError(f"config field {field}.epochs = {stage.epochs}: expected >= 1")
    if stage.optimizer.name not in OPTIMIZERS:
      raise IMLError(f"config field {field}.optimizer.name = {stage.optimizer.name!r}: expected one of {OPTIMIZERS}")
    if not stage.optimizer.lr > 0:
      raise IMLError(f"config field {field}.optimizer.lr = {stage.optimizer.lr}: expected > 0")
    if stage.trainable not in TRAINABLE:
      raise IMLError(f"config field {field}.trainable = {stage.trainable!r}: expected one of {TRAINABLE}")
    if array_model and stage.trainable != "all":
      raise IMLError(
        f"config field {field}.trainable = {stage.trainable!r}: model {array_model!r} has no token "
        "embeddings; expected 'all'"
      )
    if stage.batch_size < 1:
      raise IMLError(f"config field {field}.batch_size = {stage.batch_size}: expected >= 1")
    if stage.grad_accum < 1 or stage.batch_size % stage.grad_accum:
      raise IMLError(
        f"config field {field}.batch_size = {stage.batch_size} must be divisible by "
        f"{field}.grad_accum = {stage.grad_accum}"
      )
    if stage.eval_every < 1:
      raise IMLError(f"config field {field}.eval_every = {stage.eval_every}: expected >= 1")
  tasks.validate(config)
  if config.wandb.mode not in ("online", "offline", "disabled"):
    raise IMLError(f"config field wandb.mode = {config.wandb.mode!r}: expected 'online', 'offline' or 'disabled'")
  alignment = config.analysis.grad_alignment
  if len(alignment.sets.split(",")) != 4:
    raise IMLError(
      f"config field analysis.grad_alignment.sets = {alignment.sets!r}: expected 4 comma-separated "
      "eval sets: tag-A definitions, tag-B definitions, tag-A questions, tag-B questions"
    )
  if alignment.chunk < 1 or alignment.max_definitions < 0:
    raise IMLError(
      f"config fields analysis.grad_alignment.chunk = {alignment.chunk} (expected >= 1), "
      f"max_definitions = {alignment.max_definitions} (expected >= 0)"
    )
  if not isinstance(config.model.vocab_multiple, int) or config.model.vocab_multiple < 1:
    raise IMLError(f"config field model.vocab_multiple = {config.model.vocab_multiple!r}: expected an integer >= 1")
  fields = from_config.model_fields(config)
  unknown = sorted(set(fields) - set(registry.config_fields(config.model.name)))
  if unknown:
    raise IMLError(
      f"config fields {['model.' + k for k in unknown]} do not apply to model.name = {config.model.name!r}"
    )
  if array_model and config.analysis.grad_alignment.enabled:
    raise IMLError(
      f"config field analysis.grad_alignment.enabled: the analysis pairs texts; not for task {config.task!r}"
    )
  registry.make_config(config.model.name, **from_config.input_fields(config, 1), **fields)  # checks the values


def load_config(spec: str):
  """The config of `path[:arg]` (e.g. configs/default.py:tiny), as `--config=` would load it (unlocked)."""
  path, _, arg = spec.partition(":")
  return config_blocks.config_module(path).get_config(arg or None)


def check_batch_layout(config, mesh) -> None:
  devices = sharding.data_parallel_size(mesh)
  for name in config.stage_names:
    stage = config.stages[name]
    micro = stage.batch_size // stage.grad_accum
    if micro % devices:
      raise IMLError(
        f"config field stages.{name}.batch_size = {stage.batch_size} (micro-batch {micro}) is not "
        f"divisible by the {devices} data-parallel devices of mesh.shape = {tuple(mesh.shape.values())}"
      )
  if config.eval.batch_size % devices:
    raise IMLError(
      f"config field eval.batch_size = {config.eval.batch_size} is not divisible by the {devices} data-parallel devices"
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
) -> Iterator[Iterator[SeedContext]]:
  """Validates, locks the workdir (workdir_lock.py) and guards it, all before anything else is written, then gives
  what every stage of each stage-1 seed shares, one seed at a time; the contexts share one metric writer. The lock
  and the writer are held until the block ends."""
  validate(config)
  folder, pretrained = from_config.pretrained_model(config)
  mesh = sharding.make_mesh(config.mesh.shape)
  rules = sharding.rules_for(config.mesh.rules)
  check_batch_layout(config, mesh)
  fresh = not io_utils.listdir(workdir)  # [] also when it does not exist yet
  create_workdir(workdir)
  with workdir_lock(workdir), _emptied_on_early_failure(config, workdir, fresh), sharding.use_mesh(mesh, rules):
    if jax.process_index() == 0:
      io_utils.remove_temporaries(workdir)  # strays of a killed run; the lock says no one else writes here
    guard_workdir(config, workdir, allow_config_change, remedy)
    devices = sharding.data_parallel_size(mesh)
    per_device = ", ".join(
      f"{name} {config.stages[name].batch_size // config.stages[name].grad_accum // devices}"
      for name in config.stage_names
    )
    print(
      f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local "
      f"{jax.devices()[0].platform} devices of {jax.device_count()}, mesh {dict(mesh.shape)}, rules "
      f"{config.mesh.rules}; per-device batch: {per_device}",
      flush=True,
    )

    def contexts():
      programs = ProgramCache()
      for seed in range(config.seed, config.seed + config.n_seeds):
        task = tasks.for_seed(config, seed, folder)
        tokenizer = task.tokenizer(tokenizer_path(workdir, seed))
        model = registry.build(from_config.model_config(config, tokenizer, pretrained, folder))
        yield SeedContext(config, seed, task, tokenizer, model, mesh, rules, writer, folder, programs)

    writer = MetricWriter(
      workdir, tensorboard=config.tensorboard, hparams=_flatten(config.to_dict()), wandb_cfg=config.wandb
    )
    try:
      yield contexts()
    finally:
      writer.close()


@contextlib.contextmanager
def _emptied_on_early_failure(config, workdir: str, fresh: bool):
  """A run that fails in a workdir it found empty, before its first checkpoint, leaves it empty again: no
  config.json refuses the corrected command, no tokenizer of the failed config is reused."""
  try:
    yield
  except Exception:
    if fresh and jax.process_index() == 0 and not _holds_checkpoints(config, workdir):
      for path in (os.path.join(workdir, name) for name in io_utils.listdir(workdir) if name != LOCK_FILE):
        io_utils.rmtree(path) if io_utils.isdir(path) else io_utils.remove(path)
    raise


def _holds_checkpoints(config, workdir: str) -> bool:
  runs = [
    run for seed in range(config.seed, config.seed + config.n_seeds) for run in plan_stage_runs(config, workdir, seed)
  ]
  return any(io_utils.listdir(os.path.join(run.directory, "checkpoints")) for run in runs)


def run(config, workdir: str, allow_config_change: bool = False) -> dict:
  with seed_contexts(config, workdir, allow_config_change) as contexts:
    runs_per_seed = len(plan_stage_runs(config, workdir, config.seed))
    progress = tqdm(
      total=config.n_seeds * runs_per_seed,
      unit="stage",
      position=0,
      disable=jax.process_index() != 0 or not config.progress_bar,
    )  # above the stages' own bars
    for number, ctx in enumerate(contexts, 1):
      for index, stage_run in enumerate(plan_stage_runs(config, workdir, ctx.seed), 1):
        progress.set_description(f"seed {number}/{config.n_seeds}, stage {index}/{runs_per_seed} ({stage_run.label})")
        run_stage(ctx, stage_run)
        progress.update(1)
    progress.close()
    return run_report.write_report(config, workdir, require_complete=True)
