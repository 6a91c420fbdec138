"""Building blocks for `configs/*.py`: every field a run reads with the study's defaults (`base`, `optimizer`,
`stage`, each task's data), model configs by family or pretrained key, a study row as a config (`from_row`,
`study_define`), the typed `:arg` parser, the test-size shrinker, and loading a config file.

Config files start from these and change what their experiment changes, so each file reads as the
list of its differences from the study's setup. The study's numbers are read from iml_jax/study_settings.py
(model shapes: models/families), never written here.
"""

import dataclasses
import importlib.util
import os

import ml_collections

from iml_jax import study_settings
from iml_jax.errors import IMLError
from iml_jax.models.families import FAMILIES, PRETRAINED


def config_module(path: str):
  """The config file at `path` as a module (configs/ is a folder of files, not a package); a config built on
  another loads it with `config_module(os.path.join(os.path.dirname(__file__), "default.py"))`."""
  if not os.path.exists(path):
    raise IMLError(f"config file {path} does not exist")
  spec = importlib.util.spec_from_file_location(f"iml_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def parse_arg(arg: str | None, defaults: dict, config_file: str) -> dict:
  """The argument of `config_file:a=1,flag` read against `defaults` (each argument's default value, whose type is
  the argument's): every argument, typed — ints, floats and strings cast here, once; a bare name sets a bool.
  An unknown name or a value of the wrong type is one line naming the config file."""
  parsed = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, equals, text = (part.strip() for part in item.partition("="))
    if key not in defaults:
      raise IMLError(f"{config_file}: unknown config argument(s) {[key]}; known: {list(defaults)}")
    parsed[key] = _typed_arg(defaults[key], text if equals else None, f"{config_file}: config argument {item!r}")
  return parsed


def _typed_arg(default, text: str | None, where: str):
  if isinstance(default, bool):
    if text is None or text.lower() in ("true", "false"):
      return text is None or text.lower() == "true"
    raise IMLError(f"{where}: expected the bare name, or =true / =false")
  if text is None:
    raise IMLError(f"{where}: expected =<{type(default).__name__}> (default {default!r})")
  try:
    return type(default)(text)
  except ValueError:
    raise IMLError(f"{where}: expected {'an integer' if isinstance(default, int) else 'a number'}") from None


def optimizer(**fields) -> ml_collections.ConfigDict:
  """The study's optimizer (study_settings.ADAFACTOR) with `fields` changed; b1, b2 and eps are for AdamW."""
  return ml_collections.ConfigDict({**study_settings.ADAFACTOR, "b1": 0.9, "b2": 0.999, "eps": 1e-8, **fields})


def stage(
  train_subset: str,
  epochs: int,
  batch_size: int,
  optimizer_config=None,
  grad_accum: int = 1,
  eval_every: int = 1,
  trainable: str = "all",
) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      train_subset=train_subset,
      epochs=epochs,
      batch_size=batch_size,
      grad_accum=grad_accum,
      optimizer=optimizer_config or optimizer(),
      eval_every=eval_every,
      trainable=trainable,
    )
  )


def _nested(fields: dict) -> dict:
  """A study row's fields ({"data.fractions.q": .1, ...}) nested as a config holds them."""
  nested = {}
  for path, value in fields.items():
    *parents, last = path.split(".")
    node = nested
    for part in parents:
      node = node.setdefault(part, {})
    node[last] = value
  return nested


def numeric_data(**overrides) -> ml_collections.ConfigDict:
  """Set inclusion as the study's Pythia-70M config sets it (docs/study.md §5.3)."""
  data = ml_collections.ConfigDict(_nested(study_settings.numeric().fields)["data"])
  data.update(overrides)
  return data


def modular_data(**overrides) -> ml_collections.ConfigDict:
  """Modular arithmetic with the original generator's fractions (docs/study.md §5.4), 1,000 aliases (our choice:
  the original's count is not known) and character-spaced text."""
  data = ml_collections.ConfigDict(dict(_nested(study_settings.modular().fields)["data"], num_x=1000, block_size=24))
  data.update(overrides)
  return data


def vision_data(**overrides) -> ml_collections.ConfigDict:
  """The vision experiment's data (docs/study.md §6.1, our design): 3x3 digit-grid aliases, A/B-grid entities,
  fractions as the numeric task's."""
  subsets = ("qd1consis", "qd2incons", "q", "d1consis", "d2consis", "d3consis")
  data = ml_collections.ConfigDict(
    dict(digits="sklearn", num_aliases=200, fractions={k: study_settings.NUMERIC[k] for k in subsets})
  )
  data.update(overrides)
  return data


def _field_defaults(name: str, derived: tuple[str, ...]) -> dict:
  """The default of every field of model `name`'s config class but those the run derives."""
  from iml_jax.models import registry  # here: it imports jax and flax (3 s), which the data blocks do not need

  return {f.name: f.default for f in dataclasses.fields(registry.SPECS[name].config_class) if f.name not in derived}


def _array_model(name: str, derived: tuple[str, ...], overrides: dict) -> ml_collections.ConfigDict:
  """An array model's config: no weights to load, no vocabulary; `derived` sizes come from the task's data."""
  model = ml_collections.ConfigDict(
    dict(name=name, init_from="", allow_pickle_weights=False, vocab_multiple=1, **_field_defaults(name, derived))
  )
  model.update(overrides)
  return model


def convnet(**overrides) -> ml_collections.ConfigDict:
  return _array_model("convnet", ("image_height", "image_width", "cells", "classes"), overrides)


def toy1d_data(**overrides) -> ml_collections.ConfigDict:
  """The 1-D regression toy (docs/study.md §6.2); sizes are ours (the original's defaults are not known)."""
  data = ml_collections.ConfigDict(
    dict(
      n_anchors=20,
      d_y=4,
      n_clusters=100,
      cluster_spread=250.0,
      points_per_cluster=40,
      test_points_per_cluster=10,
      p_definition=0.25,
      d_pos_enc=32,
      separate_channels=False,
    )
  )
  data.update(overrides)
  return data


def mlp(**overrides) -> ml_collections.ConfigDict:
  return _array_model("mlp", ("in_features", "out_features"), overrides)


def define_data(**overrides) -> ml_collections.ConfigDict:
  """The define experiment's data as the study's main config sets it (docs/study.md §3.3, with tag 3), on the
  offline synthetic knowledge base and without the entity-association sets."""
  data = ml_collections.ConfigDict(
    dict(
      _nested(study_settings.cvdb_main().fields)["data"],
      knowledge_base="synthetic",
      kb_seed=0,
      cvdb_path="",
      cvdb_encoding="ISO-8859-1",
      trex_path="",
      equalize_gender=True,
      incontext_definitions=False,
      tag1_name="",
      tag2_name="",
      tag3_name="",
      entity_association_test_sets=False,
      letter_test_sets=False,
    )
  )
  data.update(overrides)
  return data


# allow_pickle_weights: load `*.bin` checkpoints, which can run arbitrary code (off: safetensors only).
# vocab_multiple: the embedding gets rows up to a multiple of lcm(vocab_multiple, mesh tensor size), the extra
# rows masked out of the logits; 128 (GPT-NeoX's choice) keeps checkpoints portable across tensor sizes.
_COMMON_MODEL_FIELDS = dict(
  init_from="",
  allow_pickle_weights=False,
  vocab_multiple=1,
  init_std=study_settings.HF_INIT_STD,
  embedding_init_std=study_settings.HF_INIT_STD,
  dtype="float32",
)
# Set by the run from the tokenizer, the checkpoint and the mesh, not by a config.
_DERIVED_MODEL_FIELDS = ("vocab_size", "valid_vocab", "family", "max_len")


def language_model(name: str = "gpt_neox", **overrides) -> ml_collections.ConfigDict:
  """A language model of family `name` (models/families/<name>.py: its architecture, the shape of its smallest
  model) with random init; vocab size comes from the tokenizer."""
  if name not in FAMILIES:
    raise IMLError(f"config field model.name = {name!r}: expected one of {sorted(FAMILIES)}")
  model = ml_collections.ConfigDict(
    dict(
      name=name, **{**_field_defaults(name, _DERIVED_MODEL_FIELDS), **_COMMON_MODEL_FIELDS, **FAMILIES[name].options}
    )
  )
  model.update(overrides)
  return model


def gpt_neox(**overrides) -> ml_collections.ConfigDict:
  return language_model("gpt_neox", **overrides)


def pretrained(key: str, weights: bool = True, **overrides) -> ml_collections.ConfigDict:
  """The model config of one of the study's models: its shape, with its weights (`init_from`) or random init."""
  if key not in PRETRAINED:
    raise IMLError(f"unknown pretrained model {key!r}; known: {sorted(PRETRAINED)}")
  family, hub_id, shape = PRETRAINED[key]
  return language_model(family, **(dict(init_from=hub_id) if weights else {}), **shape, **overrides)


def cpu_adamw(lr: float) -> ml_collections.ConfigDict:
  """AdamW as the CPU-scale runs use it (configs/default.py)."""
  return optimizer(name="adamw", lr=lr, b2=0.98, warmup_frac=0.02, grad_clip=0.0)


def base(task: str, data, model, stages: dict, **overrides) -> ml_collections.ConfigDict:
  """Every field a run reads. `study` names the study row the config is measured against (iml_jax/study_settings.py;
  empty: none) and `deviations` says in short sentences what it does differently, each ending in the fields
  it covers, e.g. "Stage 2 trains only the alias embedding rows [stages.stage2.trainable]"."""
  config = ml_collections.ConfigDict(
    dict(
      task=task,
      study="",
      deviations=(),
      seed=0,
      n_seeds=1,
      n_seeds_stage2=1,
      data=data,
      model=model,
      tokenizer=dict(vocab_size=2048),
      loss=dict(mask_prompt=False, mask_padding=False, exclude_alias_tokens=False),
      stage_names=tuple(stages),
      stages=stages,
      eval=dict(
        batch_size=256,
        max_new_tokens=study_settings.KNOWLEDGE_BASES["cvdb"]["eval.max_new_tokens"],
        subsets="all",
        prompt_bucket=8,
      ),
      # A pretrained model's train state is sharded over every device (Pythia-2.8B's fp32 parameters and
      # gradients alone are 21 GiB per device when replicated, more than a v5e chip holds); a from-scratch
      # CPU-scale model is replicated. Results are the same on any mesh.
      mesh=dict(shape=(1, -1, 1), rules="fsdp") if model.get("init_from") else dict(shape=(-1, 1, 1), rules="dp"),
      checkpoint=dict(every_steps=0, max_to_keep=0),
      # Gradient alignment (docs/study.md §9) at every evaluation when enabled; sets: tag-A definitions,
      # tag-B definitions, tag-A questions, tag-B questions (the study's grad_keys). max_definitions 0: all.
      analysis=dict(
        grad_alignment=dict(
          enabled=False, chunk=8, max_definitions=0, sets="train_defs_d1consis,train_defs_d2consis,d1consis,d2consis"
        ),
        # Linear probes (docs/study.md §10, `python -m iml_jax.analyze --analysis=probes`): questions of
        # the two eval sets `classes` whose prompt contains `question_filter`, on the final
        # parameters of `stage` (default: the first stage).
        probes=dict(classes="qd1consis,qd2incons", question_filter="", stage="", **study_settings.PROBE_FIT),
      ),
      log_every=50,
      progress_bar=True,
      tensorboard=True,
      # Weights & Biases: off while project is empty; mode "online", "offline" or "disabled".
      wandb=dict(project="", entity="", mode="online"),
    )
  )
  config.update(overrides)
  return config


def numeric_alpha_fractions(alpha: float) -> dict:
  """α for the numeric task: the study's qd1consis budget per tag split α : 1 − α; stage 2 as the study's."""
  fractions = study_settings.NUMERIC
  return {**fractions, **study_settings.tag_consistency_split(alpha, fractions["qd1consis"])}


def model_deviation(model_key: str, study_model: str) -> tuple[str, ...]:
  """The deviation of running `model_key` where the study ran `study_model` (none when they agree)."""
  return () if model_key == study_model else (f"{model_key} instead of the study's {study_model} [model.*]",)


def pretrained_arg(key: str, allowed: tuple[str, ...] | None = None) -> ml_collections.ConfigDict:
  """The `model=` argument of a study config: a key of PRETRAINED, one of `allowed` when given."""
  if allowed is not None and key not in allowed:
    raise IMLError(f"config argument model={key}: this experiment ran on {list(allowed)}")
  return pretrained(key)


# Where the study's files are expected (docs/study.md §14); override the path fields.
KNOWLEDGE_BASE_FILES = {
  "cvdb": dict(cvdb_path="datasets/cvdb/cross-verified-database.csv"),
  "trex": dict(trex_path="datasets/t-rex-data/trex_subj_obj_predicate_triplets_filtered.json"),
}


def from_row(
  row, data, model, unpublished: dict, stage_names=(), eval_every=1, **overrides
) -> ml_collections.ConfigDict:
  """The config of study row `row` (iml_jax/study_settings.py): `data` and `model` with every field the row sets,
  the row's stages (named `stage_names`, else by their training subsets), and `unpublished` (seed, n_seeds,
  n_seeds_stage2, epochs, batch_size, grad_accum; a tuple gives one value per stage) where the study does not say;
  `overrides` as in `base`."""

  def unpublished_value(field, index):
    value = unpublished[field]
    if isinstance(value, tuple) and len(value) != len(row.stages):
      raise IMLError(f"study row {row.key}: {len(row.stages)} stages, but our unpublished {field} gives {len(value)}")
    return value[index] if isinstance(value, tuple) else value

  stages = {
    name: stage(
      s.train_subset,
      optimizer_config=optimizer(**s.optimizer),
      eval_every=eval_every,
      **{
        f: unpublished_value(f, i) if getattr(s, f) is None else getattr(s, f)
        for f in ("epochs", "batch_size", "grad_accum")
      },
    )
    for i, (name, s) in enumerate(zip(stage_names or [s.train_subset for s in row.stages], row.stages))
  }
  seeds = {k: unpublished[k] for k in ("seed", "n_seeds", "n_seeds_stage2")}
  config = base(row.fields["task"], data, model, stages, study=row.key, **seeds, **overrides)
  # A grid value (study_settings.OneOf) is the config's to choose, among the grid or not.
  config.update(_nested({k: v for k, v in row.fields.items() if not isinstance(v, study_settings.OneOf)}))
  return config


def published_seeds(row) -> dict:
  """The seeds `row` publishes: for a config that takes another row's where its own is silent."""
  return {k: row.fields[k] for k in ("seed", "n_seeds", "n_seeds_stage2") if k in row.fields}


def study_define(row, model=None, data=None, stage_names=(), **unpublished) -> ml_collections.ConfigDict:
  """A define-experiment row as a config: its model with the hub's weights (or `model`), its knowledge base with
  the entity-association sets, `data` where the row is silent. Unpublished values are ours: the main config's
  first seed, batch and epochs per stage, 10 x 3 seeds, unless `unpublished` says otherwise."""
  main = study_settings.cvdb_main()
  first = main.stages[0]
  ours = dict(
    seed=main.fields["seed"],
    n_seeds=10,
    n_seeds_stage2=3,
    epochs=tuple(s.epochs for s in main.stages),
    batch_size=first.batch_size,
    grad_accum=first.grad_accum,
  )
  files = KNOWLEDGE_BASE_FILES[row.fields["data.knowledge_base"]]
  return from_row(
    row,
    define_data(**files, entity_association_test_sets=True, **(data or {})),
    model or pretrained(row.model),
    {**ours, **unpublished},
    stage_names,
    checkpoint=dict(every_steps=0, max_to_keep=1),
  )


def model_size_sweep(model_key: str, knowledge_base: str) -> ml_collections.ConfigDict:
  """One model of the study's model-size sweep (docs/study.md §4.7); a model outside it runs as its members do."""
  config = study_define(study_settings.model_size(knowledge_base, model_key), pretrained(model_key))
  if model_key not in study_settings.MODEL_SIZE_SWEEP:
    config.deviations = (f"{model_key} is not a model of the study's model-size sweep [model*]",)
  return config


PASSES_DEVIATION = (
  "each step's batch in another number of passes: the loss is token-weighted over the whole batch however it is "
  "split, so the update is the same up to rounding, and fewer passes gather a sharded model's weights fewer times "
  "[stages.*.grad_accum]"
)


def in_passes(config, passes: int) -> ml_collections.ConfigDict:
  """`config` with each stage's batch split into `passes` passes of gradient accumulation (0: as it is). On a TPU
  slice, where `fsdp` spreads the batch over the chips, one pass fits and gathers the weights half as often as the
  study's 2."""
  if passes:
    for stage_config in config.stages.values():
      stage_config.grad_accum = passes
    config.deviations = (*config.deviations, PASSES_DEVIATION)
  return config


TINY_NOTE = "test size (`:tiny`): a tiny from-scratch model, a few entities, few seeds and epochs"
TINY_DEVIATION = (
  f"{TINY_NOTE} [model.*, data.*, seed, n_seeds, n_seeds_stage2, stages.*, eval.*, stage_names (count), loss.*]"
)


def shrink_for_tests(config) -> ml_collections.ConfigDict:
  """A study config at test size (`:tiny`): a tiny from-scratch model and tokenizer, few entities (the
  synthetic knowledge base unless T-REx is chosen), one seed, one epoch per stage, fp32."""
  config.deviations = (*config.deviations, TINY_DEVIATION)
  config.model = gpt_neox(d_model=16, n_layers=1, n_heads=2, d_mlp=32)
  config.tokenizer.vocab_size = 400
  config.update(seed=0, n_seeds=1, n_seeds_stage2=1, progress_bar=False)
  if config.data.knowledge_base != "trex":
    config.data.knowledge_base = "synthetic"
  config.data.update(num_entities=60 if config.data.knowledge_base == "trex" else 120, block_size=64)
  for stage_config in config.stages.values():
    stage_config.update(epochs=1, batch_size=32, grad_accum=1, eval_every=1, optimizer=optimizer(name="adamw", lr=1e-3))
  config.eval.update(batch_size=64, max_new_tokens=4)
  return config
