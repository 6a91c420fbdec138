"""A run's config, read once. `Experiment.from_config(config)` checks the ml_collections ConfigDict that
configs/*.py build (with the command line's overrides) and turns it into frozen, typed specs, one per concern;
everything below the entry points takes the spec it uses, never the ConfigDict. The ConfigDict stays where the
user meets it: overrides, `--print_config`, the saved config.json and the resume check, sweeps, and the
comparison with the study (study_settings.py), whose outcome the spec carries.

Each spec's fields have the names of the config's fields, so `stages.stage1.batch_size` is
`experiment.stages["stage1"].batch_size`; a task's data fields are its generator's `Data` (data/*.py).
"""

import dataclasses
import functools
import types
import typing
from typing import Mapping

from iml_jax.data.common import Fractions
from iml_jax.errors import IMLError


def read(cls, node, path: str):
  """An instance of the frozen dataclass `cls` from the ConfigDict (or dict) `node` found at `path`: every field
  of `cls` that `node` lacks takes its default; a field `cls` does not have is an error naming it. Nested specs
  are read alike, mappings frozen, lists made tuples."""
  values = dict(node.items())
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  if unknown:
    raise IMLError(f"config field {path}.{unknown[0]} is not one of {cls.__name__}'s fields {sorted(fields)}")
  hints = typing.get_type_hints(cls)
  read_values = {}
  for name, value in values.items():
    hint = hints[name]
    if dataclasses.is_dataclass(hint):
      value = read(hint, value, f"{path}.{name}")
    elif typing.get_origin(hint) in (Mapping, dict) or hint is Fractions:
      value = types.MappingProxyType(dict(value.items()))
    elif isinstance(value, list):
      value = tuple(value)
    read_values[name] = value
  missing = [n for n, f in fields.items() if n not in read_values and f.default is dataclasses.MISSING]
  if missing:
    raise IMLError(f"config field {path}.{missing[0]} is missing")
  return cls(**read_values)


@dataclasses.dataclass(frozen=True)
class Optimizer:
  name: str
  lr: float
  warmup_frac: float
  b1: float
  b2: float
  eps: float
  weight_decay: float
  grad_clip: float


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of training (`stages.<name>`)."""

  name: str
  train_subset: str
  epochs: int
  batch_size: int
  grad_accum: int
  optimizer: Optimizer
  eval_every: int
  trainable: str


@dataclasses.dataclass(frozen=True)
class Model:
  """`model`: the family or array model `name`, where its weights come from, and `fields`, the model config's
  fields the config sets (models/from_config.py turns them into the model)."""

  name: str
  init_from: str
  allow_pickle_weights: bool
  vocab_multiple: int
  fields: Mapping[str, object]

  @classmethod
  def read(cls, node) -> "Model":
    own = {f.name for f in dataclasses.fields(cls)} - {"fields"}
    fields = {k: v for k, v in node.items() if k not in own}
    return cls(**{k: node[k] for k in own}, fields=types.MappingProxyType(fields))

  @property
  def dtype(self) -> str:
    return self.fields["dtype"]


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  vocab_size: int  # of a tokenizer built from the data (a pretrained model brings its own)


@dataclasses.dataclass(frozen=True)
class Loss:
  mask_prompt: bool
  mask_padding: bool
  exclude_alias_tokens: bool


@dataclasses.dataclass(frozen=True)
class Evaluation:
  batch_size: int
  max_new_tokens: int
  subsets: str
  prompt_bucket: int


@dataclasses.dataclass(frozen=True)
class Mesh:
  shape: tuple[int, ...]
  rules: str


@dataclasses.dataclass(frozen=True)
class Checkpointing:
  every_steps: int
  max_to_keep: int


@dataclasses.dataclass(frozen=True)
class GradAlignment:
  enabled: bool
  chunk: int
  max_definitions: int
  sets: str


@dataclasses.dataclass(frozen=True)
class Probes:
  classes: str
  question_filter: str
  stage: str
  c: float
  folds: int


@dataclasses.dataclass(frozen=True)
class Analysis:
  grad_alignment: GradAlignment
  probes: Probes


@dataclasses.dataclass(frozen=True)
class Wandb:
  project: str
  entity: str
  mode: str


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything a run reads, checked. `study_experiment`, `deviations` and `project_choices` are the study row the
  config is measured against, every way the config departs from it and what it chose where the study is silent
  (study_settings.py), as the results print them."""

  task: str
  seed: int
  n_seeds: int
  n_seeds_stage2: int
  data: object  # the task generator's `Data`
  model: Model
  tokenizer: Tokenizer
  loss: Loss
  stages: Mapping[str, Stage]  # in the order they run
  eval: Evaluation
  mesh: Mesh
  checkpoint: Checkpointing
  analysis: Analysis
  log_every: int
  progress_bar: bool
  tensorboard: bool
  wandb: Wandb
  study_experiment: str
  deviations: tuple[str, ...]
  project_choices: str  # the values the study does not state, as one line ('' where it states them all)

  @property
  def stage_names(self) -> tuple[str, ...]:
    return tuple(self.stages)

  @classmethod
  def from_config(cls, config) -> "Experiment":
    """The checked specs of `config`: every check that can fail before a file is written, each an IMLError
    naming the field and what is expected."""
    from iml_jax import study_settings
    from iml_jax.data import tasks

    generator = tasks.task_class(config.task).generator
    if not config.stage_names:
      raise IMLError("config field stage_names is empty: list at least one stage")
    for name in config.stage_names:
      if name not in config.stages:
        raise IMLError(f"config field stage_names names {name!r}, but stages has only {sorted(config.stages)}")
    experiment = cls(
      task=config.task,
      seed=config.seed,
      n_seeds=config.n_seeds,
      n_seeds_stage2=config.n_seeds_stage2,
      data=read(generator.Data, config.data, "data"),
      model=Model.read(config.model),
      tokenizer=read(Tokenizer, config.tokenizer, "tokenizer"),
      loss=read(Loss, config.loss, "loss"),
      stages=types.MappingProxyType(
        {name: read(Stage, {"name": name, **config.stages[name]}, f"stages.{name}") for name in config.stage_names}
      ),
      eval=read(Evaluation, config.eval, "eval"),
      mesh=Mesh(tuple(config.mesh.shape), config.mesh.rules),
      checkpoint=read(Checkpointing, config.checkpoint, "checkpoint"),
      analysis=read(Analysis, config.analysis, "analysis"),
      log_every=config.log_every,
      progress_bar=config.progress_bar,
      tensorboard=config.tensorboard,
      wandb=read(Wandb, config.wandb, "wandb"),
      study_experiment=study_settings.describe(config),
      deviations=tuple(study_settings.deviations(config)),  # an unknown `study` row is an error naming the field
      project_choices=study_settings.describe_project_choices(config),
    )
    check(experiment)
    return experiment


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


def check(experiment: Experiment) -> None:
  """The checks of the values, each field against what it may be and the fields against each other."""
  from iml_jax.data import tasks
  from iml_jax.models import from_config, registry
  from iml_jax.train import OPTIMIZERS, TRAINABLE

  array_model = tasks.array_model(experiment.task)
  model = experiment.model
  for field, least in {**_AT_LEAST, **({} if array_model else _AT_LEAST_FOR_TEXT)}.items():
    value = functools.reduce(getattr, field.split("."), experiment)
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
      raise IMLError(f"config field {field} = {value!r}: expected an integer >= {least}")
  if model.name not in registry.MODELS:
    raise IMLError(f"config field model.name = {model.name!r}: expected one of {registry.MODELS}")
  if array_model != model.name and (array_model or from_config.array_inputs(model)):
    raise IMLError(
      f"config fields task = {experiment.task!r}, model.name = {model.name!r}: "
      + (
        f"task {experiment.task!r} needs model.name = {array_model!r}"
        if array_model
        else f"model {model.name!r} reads the arrays of another task; text tasks need a language model"
      )
    )
  if model.name == "t5" and not getattr(experiment.data, "label_block_size", 0) >= 1:
    raise IMLError("config field data.label_block_size must be set (>= 1) for a seq2seq model: the target length")
  if experiment.n_seeds < 1 or experiment.n_seeds_stage2 < 1:
    raise IMLError(
      f"config fields n_seeds = {experiment.n_seeds}, n_seeds_stage2 = {experiment.n_seeds_stage2}: both must be >= 1"
    )
  for name, stage in experiment.stages.items():
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
  tasks.check(experiment)
  if experiment.wandb.mode not in ("online", "offline", "disabled"):
    raise IMLError(f"config field wandb.mode = {experiment.wandb.mode!r}: expected 'online', 'offline' or 'disabled'")
  alignment = experiment.analysis.grad_alignment
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
  if not isinstance(model.vocab_multiple, int) or model.vocab_multiple < 1:
    raise IMLError(f"config field model.vocab_multiple = {model.vocab_multiple!r}: expected an integer >= 1")
  fields = from_config.model_fields(model, experiment.data)
  unknown = sorted(set(fields) - set(registry.config_fields(model.name)))
  if unknown:
    raise IMLError(f"config fields {['model.' + k for k in unknown]} do not apply to model.name = {model.name!r}")
  if array_model and alignment.enabled:
    raise IMLError(
      f"config field analysis.grad_alignment.enabled: the analysis pairs texts; not for task {experiment.task!r}"
    )
  registry.make_config(model.name, **from_config.input_fields(model, experiment.data, 1), **fields)  # the values
