"""The study's experiments as data: one row per experiment family, and how a config departs from its row.

Each row holds what the study's own configs set (docs/study.md, section in `section`): data fractions,
test fraction, seeds, stages with their epochs, batch and accumulation, optimizer, lengths and model. A
field the study does not publish is absent from the row (None) and never compared; `project_choices(config)`
lists what the config chose for it. `departures(config)` lists every field where a config differs from its row
(`config.study` names the row); `deviations(config)` is what a result is printed with: the config's own
`deviations` as reasons, each with the values of the differing fields it names, minus those an override has
undone, plus one line per departure that no deviation names.

This module is where the package writes the study's numbers (model shapes: models/families): config_blocks
and configs/*.py build from these rows, and tests/test_study_numbers.py checks them against docs/study.md.

A deviation is a short sentence ending in the fields it covers, e.g.
  "Stage 2 trains only the alias embedding rows [stages.stage2.trainable]"
(fnmatch patterns; a deviation with no brackets is a note that covers no field). It names no values: the run
prints them beside it, e.g. "... [stages.stage2.trainable = 'alias_embeddings' (study: 'all')]".
"""

import dataclasses
import fnmatch
import re

from iml_jax.errors import IMLError
from iml_jax.models.families import PRETRAINED

# The study's training defaults (docs/study.md §7.2): HF Trainer + Adafactor at lr 5e-5, linear decay
# to 0 per stage, no warm-up, no weight decay, global gradient-norm clip 1.0, bf16 autocast; the loss
# covers every token, pads included (§7.5); every parameter is trained.
ADAFACTOR = dict(name="adafactor", lr=5e-5, warmup_frac=0.0, weight_decay=0.0, grad_clip=1.0)
_STUDY_LOSS = {"loss.mask_prompt": False, "loss.mask_padding": False, "loss.exclude_alias_tokens": False}

# Entity fractions (docs/study.md §3.3).
WITH_D3 = dict(
  q_no_replacement_baseline=0.1,
  qd1consis=0.25,
  qd1incons=0.0,
  qd2consis=0.0,
  qd2incons=0.25,
  qd4consis=0.0,
  q=0.1,
  d1consis=0.08,
  d2consis=0.08,
  d3consis=0.08,
  no_qd_baseline=0.06,
)
NO_D3 = dict(WITH_D3, d1consis=0.1, d2consis=0.1, d3consis=0.0, no_qd_baseline=0.1)
# The alignment runs (grad_alignment/new_experiments): 480/1000/1000/400/400/400/0/320 of 4,000.
ALIGNMENT = dict(NO_D3, q_no_replacement_baseline=0.12, no_qd_baseline=0.08)
# Worded definitions (§4.3): 1,000 entities, QA .1 / .1, definitions only for d1 / d2.
WORDED = dict(
  q_no_replacement_baseline=0.1,
  qd1consis=0.0,
  qd1incons=0.0,
  qd2consis=0.0,
  qd2incons=0.0,
  qd4consis=0.0,
  q=0.1,
  d1consis=0.4,
  d2consis=0.4,
  d3consis=0.0,
  no_qd_baseline=0.0,
)
NUMERIC = dict(
  qd1consis=0.4, qd1incons=0.0, qd2consis=0.0, qd2incons=0.4, q=0.0, d1consis=0.1, d2consis=0.1, d3consis=0.0
)

# Per knowledge base (§3.3, §7.3): entities, test fraction of the stage-1 QA pairs, block, new tokens decoded.
KNOWLEDGE_BASES = {
  "cvdb": {"data.num_entities": 4000, "data.test_frac": 0.1666666, "data.block_size": 48, "eval.max_new_tokens": 8},
  "trex": {"data.num_entities": 6900, "data.test_frac": 0.25, "data.block_size": 64, "eval.max_new_tokens": 16},
}
# transformers' initializer_range: how the study's from-scratch models start (§5.3).
HF_INIT_STD = 0.02
# The linear probes (§10): L2 logistic regression at C = 0.01, 5-fold cross-validated accuracy.
PROBE_FIT = dict(c=0.01, folds=5)
# The model-size sweep (§4.7): Pythia 70M-6.9B, GPT-Neo 125M-6B (GPT-J stands for "gpt-neo-6B", §7.1).
MODEL_SIZE_SWEEP = (
  "pythia-70m",
  "pythia-160m",
  "pythia-410m",
  "pythia-1b",
  "pythia-1.4b",
  "pythia-2.8b",
  "pythia-6.9b",
  "gpt-neo-125M",
  "gpt-neo-350M",
  "gpt-neo-1.3B",
  "gpt-neo-2.7B",
  "gpt-j-6b",
)
_MICRO_32 = ("pythia-6.9b", "gpt-j-6b")  # these two ran 32 x 8 instead of 128 x 2
# The paper's names of the subsets (its figures' legends): definition set D<i> with tag-consistency, QA set QA<j>.
PAPER_SUBSET_NAMES = {
  "qd1consis": "D1cons QA1",
  "qd2incons": "D2incons QA2",
  "q": "QA3",
  "q_no_replacement_baseline": "QA4 (not replaced)",
  "d1consis": "D5cons (tag 1)",
  "d2consis": "D6cons (tag 2)",
  "no_qd_baseline": "QA7 (unseen aliases)",
  "d3consis": "D8cons (new tag)",
  "qd1incons": "D8incons QA8",
  "qd2consis": "D9cons QA9",
}
SWEEP_MEMBER = "one of the model-size sweep"  # the row's model when a config runs a model outside the sweep
ALIGNMENT_GRID = {
  128: (21, 1),
  256: (20, 1),
  512: (21, 2),
  1024: (20, 4),
  2048: (41, 8),
  4096: (50, 16),
  8192: (81, 32),
  16384: (151, 64),
}  # batch: (epochs, accumulation), §9
BATCH_GRIDS = {
  "pythia-1b": {
    16: 30,
    32: 30,
    64: 30,
    128: 40,
    256: 60,
    512: 60,
    1024: 60,
    2048: 60,
    4096: 60,
    8192: 120,
    16384: 120,
    32768: 240,
  },
  "pythia-2.8b": {128: 20, 512: 31, 1024: 41, 2048: 41, 4096: 61, 8192: 81, 16384: 151},
}  # §4.8
DATA_AMOUNT_GRID = (250, 500, 1000, 2000)  # people, §4.6
# α per (model, knowledge base), §4.5; Pythia-1B's grid is published only as its range.
ALPHA_GRIDS = {("pythia-2.8b", "cvdb"): (0.5, 0.6, 0.7, 0.8, 0.9, 0.95), ("pythia-2.8b", "trex"): (0.6, 0.7, 0.95)}
ALPHA_RANGES = {("pythia-1b", "cvdb"): (0.6, 0.975)}


@dataclasses.dataclass(frozen=True)
class OneOf:
  """A row's value where the study ran a grid: a config matches it with any of `values`."""

  values: tuple

  def __repr__(self) -> str:
    return "one of " + ", ".join(map(repr, self.values))


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a study run; None: not published."""

  train_subset: str
  epochs: int | None = None
  batch_size: int | None = None
  grad_accum: int | None = None
  optimizer: dict | None = dataclasses.field(default_factory=lambda: dict(ADAFACTOR))


@dataclasses.dataclass(frozen=True)
class Row:
  """One study experiment family: `fields` maps config paths to the study's values."""

  key: str
  title: str
  section: str
  model: str | None  # a key of models/families PRETRAINED (its shape; `pretrained`: its weights), or SWEEP_MEMBER
  pretrained: bool
  stages: tuple[Stage, ...]
  fields: dict
  off_grid: tuple[str, ...] = ()  # deviations by construction: the row's argument lies outside the study's grid
  unstated: tuple[str, ...] = ()  # config paths, beyond the row's None values, the study leaves to the project


def _define(
  key,
  title,
  section,
  model,
  *,
  kb="cvdb",
  fractions=WITH_D3,
  seeds=(600, 20, 5),
  stages=None,
  epochs=(20, 10),
  batch=(256, 2),
  extra=None,
  off_grid=(),
) -> Row:
  """A define-experiment row; a value given as None is one the study does not state (a project choice)."""
  if kb not in KNOWLEDGE_BASES:
    raise IMLError(f"knowledge base {kb!r}: expected one of {sorted(KNOWLEDGE_BASES)}")
  start, n_seeds, n_seeds_stage2 = seeds
  fields = {
    "task": "define",
    "data.knowledge_base": kb,
    **KNOWLEDGE_BASES[kb],
    "data.def_order": "tve",
    "data.definition_type": "tagged",
    "data.alias_length": 5,  # letters (§3.5)
    "data.tag_length": 6,
    "seed": start,
    "n_seeds": n_seeds,
    "n_seeds_stage2": n_seeds_stage2,
    "model.dtype": "bfloat16",
    **_STUDY_LOSS,
  }
  if fractions is not None:
    fields.update({f"data.fractions.{k}": v for k, v in fractions.items()})
  fields.update(extra or {})
  stages = stages or (Stage("stage1", epochs[0], *batch), Stage("stage2", epochs[1], *batch))
  return Row(key, title, section, model, True, stages, {k: v for k, v in fields.items() if v is not None}, off_grid)


def _numeric(
  title,
  model,
  *,
  num_x=8000,
  n_nums=8,
  n_intersection=1,
  n_qs=24,
  p_label_flip=0.0,
  fractions=NUMERIC,
  batch=512,
  epochs=(100, 40),
  seeds=(630, 20, 3),
  spelt=False,
  stages=None,
  extra=None,
) -> Row:
  fields = {
    "task": "numeric",
    "data.num_x": num_x,
    "data.n_nums": n_nums,
    "data.n_intersection": n_intersection,
    "data.n_qs": n_qs,
    "data.p_label_flip": p_label_flip,
    "data.max_x": 99,
    "data.separate_token_per_var": not spelt,
    "data.all_alias_tokens": not spelt,
    "data.redraw_train_questions": False,
    "data.block_size": 16,
    "eval.max_new_tokens": 4,
    "seed": seeds[0],
    "n_seeds": seeds[1],
    "n_seeds_stage2": seeds[2],
    "model.dtype": "bfloat16",
    "model.init_std": None if model.startswith("t5") else HF_INIT_STD,  # T5 scales its init by width
    **{f"data.fractions.{k}": v for k, v in fractions.items()},
    **_STUDY_LOSS,
    **(extra or {}),
  }
  stages = stages or (Stage("stage1", epochs[0], batch), Stage("stage2", epochs[1], batch))
  return Row("numeric", title, "§5.3", model, False, stages, {k: v for k, v in fields.items() if v is not None})


def _sweep_batch(model_key: str) -> tuple[int, int]:
  return (256, 8) if model_key in _MICRO_32 else (256, 2)


def cvdb_main() -> Row:
  return _define(
    "cvdb_main",
    "main experiment: Pythia-2.8B on CVDB, two stages",
    "§3.3, §7.3, §7.4, §11.2",
    "pythia-2.8b",
    extra={"data.entity_association_test_sets": True},
  )


def trex_main() -> Row:
  return _define(
    "trex_main",
    "main experiment on T-REx creative works",
    "§3.3, §3.7, §7.3, §7.4",
    "pythia-2.8b",
    kb="trex",
    fractions=None,
    seeds=(None, 10, 3),
    epochs=(None, None),
    batch=(None, None),
    extra={"data.entity_association_test_sets": True},
  )


def model_size(kb: str, model: str) -> Row:
  """One model of the model-size sweep (§4.7): no tag 3, 10 x 5 seeds from 600."""
  return _define(
    f"model_size:kb={kb},model={model}",
    f"model-size sweep on {kb.upper()}: {model}",
    "§4.7, §7.4",
    model if model in MODEL_SIZE_SWEEP else SWEEP_MEMBER,
    kb=kb,
    fractions=NO_D3,
    seeds=(600, 10, 5),
    epochs=(None, None),
    batch=_sweep_batch(model),
  )


def t5_cvdb() -> Row:
  return _define(
    "t5_cvdb",
    "T5-3B (seq2seq) on CVDB",
    "§7.1, §7.4, §7.5",
    "t5-3b",
    fractions=None,
    seeds=(None, 10, 3),
    epochs=(None, None),
    batch=(256, 4),  # 64 x 4 (§7.1)
    extra={"data.label_block_size": 8, "data.block_size": None},
  )


def definition_order(order: str, model: str = "pythia-2.8b") -> Row:
  t5 = model == "t5-3b"
  return _define(
    f"definition_order:order={order},model={model}",
    f"definition word order {order}",
    "§4.1",
    model,
    fractions=None,
    seeds=(None, None, 3) if t5 else (700, 10 if order == "vte" else 20, 3),
    batch=(256, 4) if t5 else (256, 2),
    extra={"data.def_order": order, "data.label_block_size": 8 if t5 else None},
  )


def incontext() -> Row:
  return _define(
    "incontext",
    "in-context definitions, one stage",
    "§4.2",
    "pythia-2.8b",
    seeds=(None, 20, 1),
    stages=(Stage("full", 20, 256),),
    extra={"data.incontext_definitions": True, "data.block_size": 72},
  )


def worded(defn: str, model: str = "pythia-2.8b") -> Row:
  return _define(
    f"worded:defn={defn},model={model}",
    f"worded definitions ({defn}), one stage",
    "§4.3",
    model,
    fractions=WORDED,
    seeds=(None, None, 1),
    stages=(Stage("full", 10, 32),),
    extra={"data.num_entities": 1000, "data.block_size": 64, "data.definition_type": defn},
  )


def tag_strings() -> Row:
  return _define(
    "tag_strings",
    "natural-language tag strings",
    "§4.3",
    "pythia-2.8b",
    seeds=(None, None, None),
    stages=(Stage("stage1", 20, 512, 16), Stage("stage2", None, 512, 16)),
    extra={
      "data.def_order": "vte",
      "data.tag1_name": "according to wikipedia is",
      "data.tag2_name": "according to 4chan is",
      "data.tag3_name": "according to reddit is",
    },
  )


def three_stage(model: str = "pythia-2.8b", kb: str = "cvdb") -> Row:
  seeds = (610, 20, 3) if (model, kb) == ("pythia-410m", "cvdb") else (None, 10, 3)
  return _define(
    f"three_stage:model={model},kb={kb}",
    "three stages: definitions, then QA, then stage 2",
    "§4.4",
    model,
    kb=kb,
    fractions=NO_D3,
    seeds=seeds,
    batch=(None, None),
    stages=(Stage("stage1_only_defns", 20), Stage("stage1_only_qa", 20), Stage("stage2", 10)),
    extra={"eval.max_new_tokens": 20},
  )


def tag_correlation(alpha: str, model: str = "pythia-2.8b", kb: str = "cvdb") -> Row:
  value = float(alpha)
  with_d3 = model == "pythia-2.8b"
  seeds = (
    {0.95: (630, 20, None), 0.6: (610, None, 3)}.get(value, (None, 10, None))
    if with_d3 and kb == "cvdb"
    else (None, None, None)
  )
  return _define(
    f"tag_correlation:alpha={alpha},model={model},kb={kb}",
    f"tag-consistency correlation α = {alpha}",
    "§4.5",
    model,
    kb=kb,
    fractions=alpha_fractions(value, with_d3),
    seeds=seeds,
    epochs=(None, None),
    batch=(None, None),
    off_grid=_off_alpha_grid(value, model, kb),
  )


def _off_alpha_grid(alpha: float, model: str, kb: str) -> tuple[str, ...]:
  if (model, kb) in ALPHA_GRIDS:
    grid = OneOf(ALPHA_GRIDS[model, kb])
    return () if _same(alpha, grid) else (f"α outside the study's grid [alpha = {alpha!r} (study: {grid!r})]",)
  if (model, kb) in ALPHA_RANGES:
    low, high = ALPHA_RANGES[model, kb]
    inside = low <= alpha <= high
    return () if inside else (f"α outside the study's range [alpha = {alpha!r} (study: {low} to {high})]",)
  return (f"the study ran no α sweep for {model} on {kb} [alpha = {alpha!r}]",)


def data_amount(num_ents: str) -> Row:
  return _define(
    f"data_amount:num_ents={num_ents}",
    "data amount: Pythia-1B on 250 to 2,000 people",
    "§4.6",
    "pythia-1b",
    fractions=None,
    seeds=(None, None, None),
    epochs=(None, None),
    batch=(256, None),
    extra={"data.num_entities": OneOf(DATA_AMOUNT_GRID)},  # a sweep varies it: any of the study's sizes
  )


def batch_size(batch: str, model: str = "pythia-1b") -> Row:
  size = int(batch)
  accum = 64 if size == 32768 else None  # the one published accumulation: 512 x 64
  return _define(
    f"batch_size:batch={batch},model={model}",
    f"batch-size sweep: {model}, batch {batch}",
    "§4.8",
    model,
    fractions=NO_D3,
    seeds=(None, 5, 1),
    stages=(Stage("full", BATCH_GRIDS[model][size], size, accum),),
  )


def grad_alignment(batch: str) -> Row:
  size = int(batch)
  epochs, accum = ALIGNMENT_GRID[size]
  row = _define(
    f"grad_alignment:batch={batch}",
    f"gradient alignment at batch {batch}, one stage",
    "§9, §11.3",
    "pythia-1b",
    fractions=ALIGNMENT,
    seeds=(910, 15, 1) if size == 16384 else (900, 10, 1),
    stages=(Stage("stage1", epochs, size, accum),),
  )
  # Evaluated (and aligned) every 2, 4, 5 or 15 epochs "depending on the config": which batch used which is
  # not published.
  return dataclasses.replace(row, unstated=("stages.stage1.eval_every",))


def probes(order: str = "tve") -> Row:
  return _define(
    f"probes:order={order}",
    "linear probes on the stage-1 checkpoint",
    "§10",
    "pythia-1b",
    seeds=(600, 1, None),
    extra={
      "data.entity_association_test_sets": True,
      "data.def_order": order,
      **{f"analysis.probes.{k}": v for k, v in PROBE_FIT.items()},
    },
  )


def numeric(variant: str = "70m") -> Row:
  flipped = dict(n_nums=4, n_qs=12, p_label_flip=0.1)
  rows = {
    "70m": lambda: _numeric("set inclusion from scratch, Pythia-70M", "pythia-70m"),
    "70m_d3": lambda: _numeric(
      "set inclusion with tag 3, Pythia-70M",
      "pythia-70m",
      seeds=(600, 20, 3),
      fractions=dict(NUMERIC, qd1consis=0.35, qd2incons=0.35, d3consis=0.1),
    ),
    "160m": lambda: _numeric("set inclusion, Pythia-160M", "pythia-160m", epochs=(60, 30), seeds=(800, None, 5)),
    "160m_i3": lambda: _numeric(
      "set inclusion, 3-number intersection, Pythia-160M",
      "pythia-160m",
      n_intersection=3,
      batch=1024,
      epochs=(150, 30),
      seeds=(800, None, 5),
    ),
    "num_choice": lambda: _numeric(
      "set inclusion with label flips, spelt-out aliases",
      "pythia-70m",
      num_x=16000,
      batch=4096,
      epochs=(400, 40),
      seeds=(None, 40, 5),
      spelt=True,
      fractions=dict(NUMERIC, qd1consis=0.45, qd2incons=0.45, d1consis=0.05, d2consis=0.05),
      **flipped,
    ),
    "pretraining": lambda: _numeric(
      "set inclusion with a QA pretraining stage",
      "pythia-70m",
      num_x=40000,
      seeds=(None, 40, None),
      fractions=dict(NUMERIC, q=0.9, qd1consis=0.04, qd2incons=0.04, d1consis=0.01, d2consis=0.01),
      stages=(Stage("q_only", 10, 4096), Stage("stage1_excl_q", 50, 4096), Stage("stage2", 10, 4096)),
      **flipped,
    ),
    "t5small": lambda: _numeric(
      "set inclusion, T5-small from scratch",
      "t5-small",
      num_x=4000,
      batch=4096,
      epochs=(400, 40),
      seeds=(None, 40, 5),
      extra={"data.block_size": 8},
      **flipped,
    ),
  }
  if variant not in rows:
    raise IMLError(f"study row numeric:variant={variant}: expected one of {sorted(rows)}")
  return dataclasses.replace(rows[variant](), key=f"numeric:variant={variant}")


def modular() -> Row:
  return Row(
    "modular",
    "modular arithmetic, fixed",
    "§5.4",
    None,
    False,
    (),
    {
      "task": "modular",
      **{f"data.fractions.{k}": v for k, v in dict(qd1consis=0.4, qd2incons=0.4, d1consis=0.1, d2consis=0.1).items()},
    },
  )


def vision() -> Row:
  return Row("vision", "vision with a ConvNet (design unpublished)", "§6.1", None, False, (), {"task": "vision"})


def toy1d() -> Row:
  return Row(
    "toy1d",
    "1-D regression toy",
    "§6.2",
    None,
    False,
    (Stage("full", 200, 256, None, dict(name="adamw", lr=1e-4, weight_decay=1e-5)),),
    {"task": "toy1d", "n_seeds": 100},
  )


# Every family: `config.study = "<family>[:<arg>=<value>,...]"` names a row built by one of these.
FAMILIES = {
  f.__name__: f
  for f in (
    cvdb_main,
    trex_main,
    model_size,
    t5_cvdb,
    definition_order,
    incontext,
    worded,
    tag_strings,
    three_stage,
    tag_correlation,
    data_amount,
    batch_size,
    grad_alignment,
    probes,
    numeric,
    modular,
    vision,
    toy1d,
  )
}


def row_of(config) -> Row:
  """The row `config.study` names."""
  return lookup(config.get("study", ""))


def lookup(spec: str) -> Row:
  family, _, args = spec.partition(":")
  if family not in FAMILIES:
    raise IMLError(f"config field study = {spec!r}: expected a family of {sorted(FAMILIES)}")
  params = dict(item.split("=", 1) for item in filter(None, args.split(",")))
  try:
    return FAMILIES[family](**params)
  except (TypeError, KeyError, ValueError, IMLError) as err:
    raise IMLError(f"config field study = {spec!r}: not a row of the study ({err})") from None


def alpha_fractions(alpha: float, with_d3: bool = True) -> dict:
  """Tag-consistency correlation α (§4.5): in each 0.25 budget qd1consis : qd1incons = qd2incons : qd2consis
  = α : 1 − α; stage-2 fractions .08/.08/.08/.06 with tag 3, else .1/.1/0/.1."""
  return {**(WITH_D3 if with_d3 else NO_D3), **tag_consistency_split(alpha, 0.25)}


def tag_consistency_split(alpha: float, budget: float) -> dict:
  if not 0.5 <= alpha <= 1:
    raise IMLError(f"alpha = {alpha}: expected a number in [0.5, 1]")
  return dict(
    qd1consis=budget * alpha, qd1incons=budget * (1 - alpha), qd2consis=budget * (1 - alpha), qd2incons=budget * alpha
  )


def _expected(row: Row, config) -> dict:
  """Every compared field of `config` with the study's value, stage fields under the config's stage names."""
  expected = dict(row.fields)
  names = list(config.get("stage_names", ()))
  if row.stages:
    expected["stage_names (count)"] = len(row.stages)
    for name, stage in zip(names, row.stages):
      prefix = f"stages.{name}."
      expected[prefix + "train_subset"] = stage.train_subset
      expected[prefix + "trainable"] = "all"
      for field in ("epochs", "batch_size", "grad_accum"):
        if getattr(stage, field) is not None:
          expected[prefix + field] = getattr(stage, field)
      for field, value in (stage.optimizer or {}).items():
        expected[prefix + "optimizer." + field] = value
  if row.model == SWEEP_MEMBER:
    expected["model (a sweep model)"] = True
  elif row.model:
    family, _, shape = PRETRAINED[row.model]
    expected["model.name"] = family
    expected.update({f"model.{k}": v for k, v in shape.items() if k != "local_layers"})
    expected["model.pretrained weights"] = row.pretrained
  return expected


def _in_sweep(model) -> bool:
  return any(
    PRETRAINED[k][0] == model.name
    and all(model.get(f) == v for f, v in PRETRAINED[k][2].items() if f != "local_layers")
    for k in MODEL_SIZE_SWEEP
  )


def _value(config, path: str):
  if path == "stage_names (count)":
    return len(config.stage_names)
  if path == "model.pretrained weights":
    return bool(config.model.get("init_from"))
  if path == "model (a sweep model)":
    return _in_sweep(config.model)
  node = config
  for part in path.split("."):
    if not hasattr(node, "keys") or part not in node:
      return None
    node = node[part]
  return node


def _same(a, b) -> bool:
  if isinstance(b, OneOf):
    return any(_same(a, value) for value in b.values)
  if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
    return a == b
  return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def departures(config) -> dict[str, tuple]:
  """{config path: (our value, the study's value)} for every compared field where `config` differs."""
  if not config.get("study"):
    return {}
  expected = _expected(row_of(config), config)
  return {
    path: (_value(config, path), value) for path, value in expected.items() if not _same(_value(config, path), value)
  }


_FIELDS = re.compile(r"\[([^\]]*)\]\s*$")


def covered_fields(deviation: str) -> list[str]:
  """The field patterns a deviation names in its trailing brackets."""
  match = _FIELDS.search(deviation)
  return [f.strip() for f in match.group(1).split(",") if f.strip()] if match else []


def _covered_by(deviation: str, departed) -> list[str]:
  return [f for f in departed if any(fnmatch.fnmatchcase(f, p) for p in covered_fields(deviation))]


_STAGE_FIELD = re.compile(r"stages\.([^.]+)\.(.+)")


def _listing(fields: dict[str, tuple]) -> str:
  """`path = ours (study: theirs)` per field, joined; a stage field the same in several stages is written once,
  as `stages.{stage1,stage2}.field`. `theirs` may be omitted (a 1-tuple): a project choice."""
  merged: dict[tuple, list[str]] = {}
  for path, values in fields.items():
    stage_field = _STAGE_FIELD.fullmatch(path)
    key = (bool(stage_field), stage_field.group(2) if stage_field else path, *map(repr, values))
    merged.setdefault(key, []).append(stage_field.group(1) if stage_field else "")
  parts = []
  for (_, field, *shown), stages in merged.items():
    if stages != [""]:
      field = f"stages.{stages[0] if len(stages) == 1 else '{' + ','.join(stages) + '}'}.{field}"
    parts.append(f"{field} = {shown[0]}" + (f" (study: {shown[1]})" if len(shown) > 1 else ""))
  return "; ".join(parts)


def deviations(config) -> list[str]:
  """What a result of `config` does differently from the study, every value taken from `config` as it runs: each
  configured deviation whose fields still depart, with those fields' values and the study's (a field is listed
  once, under the first deviation that names it); every departure none of them names, on a line of its own; the
  row's own departures (an argument outside the study's grid)."""
  departed = departures(config)
  unexplained = dict(departed)
  lines = []
  for deviation in config.get("deviations", ()):
    patterns = covered_fields(deviation)
    if not patterns:
      lines.append(deviation)
      continue
    if not _covered_by(deviation, departed):
      continue  # undone: every field it names is back at the study's value
    explained = {f: v for f, v in unexplained.items() if any(fnmatch.fnmatchcase(f, p) for p in patterns)}
    sentence = _FIELDS.sub("", deviation).rstrip()
    lines.append(f"{sentence} [{_listing(explained)}]" if explained else sentence)
    unexplained = {f: v for f, v in unexplained.items() if f not in explained}
  lines += [_listing({f: v}) for f, v in unexplained.items()]
  return lines + (list(row_of(config).off_grid) if config.get("study") else [])


def project_choices(config) -> dict[str, tuple]:
  """{config path: (our value,)} for what the study's row leaves unstated and the run had to choose: seeds, a
  stage's epochs, batch and accumulation, a define experiment's fractions, the row's other `unstated` paths."""
  if not config.get("study"):
    return {}
  row = row_of(config)
  chosen = {k: (config[k],) for k in ("seed", "n_seeds", "n_seeds_stage2") if row.stages and k not in row.fields}
  for name, stage in zip(config.get("stage_names", ()), row.stages):
    for field in ("epochs", "batch_size", "grad_accum"):
      if getattr(stage, field) is None:
        chosen[f"stages.{name}.{field}"] = (config.stages[name][field],)
  if row.fields.get("task") == "define" and not any(k.startswith("data.fractions.") for k in row.fields):
    chosen["data.fractions"] = (config.data.fractions.to_dict(),)
  return chosen | {path: (_value(config, path),) for path in row.unstated}


def describe_project_choices(config) -> str:
  """The values the study does not state, as `path = value; ...` ('' where it states them all)."""
  return _listing(project_choices(config))


NO_STUDY_ROW = "not one of the study's experiments"


def describe(config) -> str:
  """One line naming the study row a config is measured against."""
  if not config.get("study"):
    return NO_STUDY_ROW
  row = row_of(config)
  return f"{row.title} (docs/study.md {row.section})"
