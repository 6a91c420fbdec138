"""The study's numbers written out a second time, by hand from docs/study.md (model shapes: from the models'
published configs), and checked against what the configs resolve to and against the tables of
iml_jax/study_settings.py and models/families, where the package writes them once: changing one study number
there fails a test here. Nothing below is read from the package."""

import functools
import os

import pytest

from iml_jax import experiment, study_settings
from iml_jax.models.families import PRETRAINED
from test_experiment import ROOT

# §3.3: entity fractions, in the order q_no_replacement_baseline, qd1consis, qd1incons, qd2consis, qd2incons,
# qd4consis, q (stage 1), d1consis, d2consis, d3consis, no_qd_baseline (stage 2).
SUBSETS = (
  "q_no_replacement_baseline",
  "qd1consis",
  "qd1incons",
  "qd2consis",
  "qd2incons",
  "qd4consis",
  "q",
  "d1consis",
  "d2consis",
  "d3consis",
  "no_qd_baseline",
)
WITH_TAG3 = (0.1, 0.25, 0, 0, 0.25, 0, 0.1, 0.08, 0.08, 0.08, 0.06)
WITHOUT_TAG3 = (0.1, 0.25, 0, 0, 0.25, 0, 0.1, 0.1, 0.1, 0, 0.1)
ALIGNMENT_FRACTIONS = (0.12, 0.25, 0, 0, 0.25, 0, 0.1, 0.1, 0.1, 0, 0.08)
WORDED_FRACTIONS = (0.1, 0, 0, 0, 0, 0, 0.1, 0.4, 0.4, 0, 0)  # §4.3
# §4.5: (qd1consis = qd2incons, qd1incons = qd2consis) for each α: α and 1 − α of .25.
ALPHA_SPLITS = {
  0.5: (0.125, 0.125),
  0.6: (0.15, 0.1),
  0.7: (0.175, 0.075),
  0.8: (0.2, 0.05),
  0.9: (0.225, 0.025),
  0.95: (0.2375, 0.0125),
  0.975: (0.24375, 0.00625),
}
# §3.3, §7.3: people or works, test fraction of the stage-1 QA pairs, block, new tokens.
CVDB = {"data.num_entities": 4000, "data.test_frac": 0.1666666, "data.block_size": 48, "eval.max_new_tokens": 8}
TREX = {"data.num_entities": 6900, "data.test_frac": 0.25, "data.block_size": 64, "eval.max_new_tokens": 16}
ADAFACTOR = dict(name="adafactor", lr=5e-5, warmup_frac=0.0, weight_decay=0.0, grad_clip=1.0)  # §7.2
# §4.8: batch: epochs, one stage.
PYTHIA_1B_BATCH_EPOCHS = {
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
}
PYTHIA_2_8B_BATCH_EPOCHS = {128: 20, 512: 31, 1024: 41, 2048: 41, 4096: 61, 8192: 81, 16384: 151}
# §9: batch: (epochs, accumulation).
ALIGNMENT_GRID = {
  128: (21, 1),
  256: (20, 1),
  512: (21, 2),
  1024: (20, 4),
  2048: (41, 8),
  4096: (50, 16),
  8192: (81, 32),
  16384: (151, 64),
}
# §4.7, §7.1: the sweep; decoder shapes as published: (family, hub id, d_model, layers, heads, MLP width).
SWEEP = (
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
DECODERS = {
  "pythia-70m": ("gpt_neox", "EleutherAI/pythia-70m-deduped", 512, 6, 8, 2048),
  "pythia-160m": ("gpt_neox", "EleutherAI/pythia-160m-deduped", 768, 12, 12, 3072),
  "pythia-410m": ("gpt_neox", "EleutherAI/pythia-410m-deduped", 1024, 24, 16, 4096),
  "pythia-1b": ("gpt_neox", "EleutherAI/pythia-1b-deduped", 2048, 16, 8, 8192),
  "pythia-1.4b": ("gpt_neox", "EleutherAI/pythia-1.4b-deduped", 2048, 24, 16, 8192),
  "pythia-2.8b": ("gpt_neox", "EleutherAI/pythia-2.8b-deduped", 2560, 32, 32, 10240),
  "pythia-6.9b": ("gpt_neox", "EleutherAI/pythia-6.9b-deduped", 4096, 32, 32, 16384),
  "gpt-neo-125M": ("gpt_neo", "EleutherAI/gpt-neo-125M", 768, 12, 12, 3072),
  "gpt-neo-350M": ("gpt_neo", "EleutherAI/gpt-neo-350M", 1024, 24, 16, 4096),
  "gpt-neo-1.3B": ("gpt_neo", "EleutherAI/gpt-neo-1.3B", 2048, 24, 16, 8192),
  "gpt-neo-2.7B": ("gpt_neo", "EleutherAI/gpt-neo-2.7B", 2560, 32, 20, 10240),
  "gpt-j-6b": ("gptj", "EleutherAI/gpt-j-6b", 4096, 28, 16, 16384),
  "llama-2-7b": ("llama", "meta-llama/Llama-2-7b-hf", 4096, 32, 32, 11008),
  "gpt2": ("gpt2", "gpt2", 768, 12, 12, 3072),
}
# T5: (hub id, d_model, d_kv, d_ff, heads, layers).
T5 = {"t5-small": ("google-t5/t5-small", 512, 64, 2048, 8, 6), "t5-3b": ("google-t5/t5-3b", 1024, 128, 16384, 32, 24)}


def _fractions(values, subsets=SUBSETS) -> dict:
  return {f"data.fractions.{s}": v for s, v in zip(subsets, values)}


def _model(key: str, weights: bool = True) -> dict:
  if key in T5:
    hub, d_model, d_kv, d_ff, heads, layers = T5[key]
    shape = dict(name="t5", d_model=d_model, d_kv=d_kv, d_ff=d_ff, n_heads=heads, n_layers=layers)
  else:
    family, hub, d_model, layers, heads, d_mlp = DECODERS[key]
    shape = dict(name=family, d_model=d_model, n_layers=layers, n_heads=heads, d_mlp=d_mlp)
  return {f"model.{k}": v for k, v in dict(shape, init_from=hub if weights else "", dtype="bfloat16").items()}


def _stages(*stages) -> dict:
  """(name, training subset, epochs, batch, accumulation), None where the study does not say; Adafactor (§7.2)."""
  expected = {"stage_names": tuple(s[0] for s in stages)}
  for name, subset, *sizes in stages:
    given = dict(train_subset=subset, **{f"optimizer.{k}": v for k, v in ADAFACTOR.items()})
    given.update({k: v for k, v in zip(("epochs", "batch_size", "grad_accum"), sizes) if v is not None})
    expected.update({f"stages.{name}.{k}": v for k, v in given.items()})
  return expected


def _seeds(seed, n_seeds, n_seeds_stage2) -> dict:
  given = dict(seed=seed, n_seeds=n_seeds, n_seeds_stage2=n_seeds_stage2)
  return {k: v for k, v in given.items() if v is not None}


TWO_STAGES = _stages(("stage1", "stage1", 20, 256, 2), ("stage2", "stage2", 10, 256, 2))  # §7.3: 128 x 2
T5_STAGES = _stages(("stage1", "stage1", 20, 256, 4), ("stage2", "stage2", 10, 256, 4))  # §7.1: 64 x 4
NOTHING_MASKED = {"loss.mask_prompt": False, "loss.mask_padding": False, "loss.exclude_alias_tokens": False}  # §7.5


def _define(model, fractions=WITH_TAG3, seeds=(None, None, None), stages=TWO_STAGES, kb=CVDB, **fields) -> dict:
  """A define run (§3): `tve` tagged definitions, five-letter aliases and six-letter tags (§3.5)."""
  return {
    **kb,
    "data.knowledge_base": "trex" if kb is TREX else "cvdb",
    "data.def_order": "tve",
    "data.definition_type": "tagged",
    "data.alias_length": 5,
    "data.tag_length": 6,
    **_fractions(fractions),
    **_seeds(*seeds),
    **stages,
    **_model(model),
    **NOTHING_MASKED,
    **fields,
  }


def _alpha(alpha, model="pythia-2.8b", seeds=(None, None, None), **fields):
  consistent, inconsistent = ALPHA_SPLITS[alpha]
  stage2 = WITH_TAG3 if model == "pythia-2.8b" else WITHOUT_TAG3
  fractions = (0.1, consistent, inconsistent, inconsistent, consistent, *stage2[5:])
  return _define(model, fractions, seeds, **fields)


def _numeric(model, num_x, n_nums, n_qs, flips, fractions, batch, epochs, seeds, **fields) -> dict:
  """A from-scratch set-inclusion run (§5.3): fractions qd1consis, qd2incons, d1consis, d2consis; block 16,
  4 new tokens, numbers 0-98 (max_x is exclusive), transformers' init for a decoder."""
  stages = _stages(*[(s, s, e, batch) for s, e in zip(("stage1", "stage2"), epochs)]) if epochs else {}
  return {
    "data.num_x": num_x,
    "data.n_nums": n_nums,
    "data.n_intersection": 1,
    "data.n_qs": n_qs,
    "data.p_label_flip": flips,
    "data.max_x": 99,
    "data.block_size": 16,
    "eval.max_new_tokens": 4,
    **({} if model.startswith("t5") else {"model.init_std": 0.02}),
    **_fractions(fractions, ("qd1consis", "qd2incons", "d1consis", "d2consis")),
    **_seeds(*seeds),
    **stages,
    **_model(model, weights=False),
    **NOTHING_MASKED,
    **fields,
  }


ORDERS = ("tve", "tev", "vte", "vet", "etv", "evt")
STUDY = {
  "pythia_cvdb_2stage.py": _define("pythia-2.8b", seeds=(600, 20, 5), **{"data.entity_association_test_sets": True}),
  **{
    f"pythia_cvdb_2stage.py:model={m}": _define(
      m,
      WITHOUT_TAG3,
      (600, 10, 5),
      _stages(
        *[(s, s, e, 256, 8 if m in ("pythia-6.9b", "gpt-j-6b") else 2) for s, e in (("stage1", 20), ("stage2", 10))]
      ),
    )
    for m in SWEEP
  },
  "trex_2stage.py": _define("pythia-2.8b", seeds=(None, 10, 3), kb=TREX),
  "trex_2stage.py:model=pythia-410m": _define("pythia-410m", WITHOUT_TAG3, (600, 10, 5), kb=TREX),
  "t5_cvdb_2stage.py": _define("t5-3b", seeds=(None, 10, 3), stages=T5_STAGES, **{"data.label_block_size": 8}),
  **{
    f"definition_order.py:order={o}": _define(
      "pythia-2.8b", seeds=(700, 10 if o == "vte" else 20, 3), **{"data.def_order": o}
    )
    for o in ORDERS
  },
  "definition_order.py:order=evt,model=t5-3b": _define(
    "t5-3b", seeds=(700, 10, 3), stages=T5_STAGES, **{"data.def_order": "evt", "data.label_block_size": 8}
  ),
  "incontext.py": _define(
    "pythia-2.8b",
    seeds=(None, 20, None),
    stages=_stages(("full", "full", 20, 256)),
    **{"data.incontext_definitions": True, "data.block_size": 72},
  ),
  **{
    f"is_isnt.py:defn={kind},model={model}": _define(
      model,
      WORDED_FRACTIONS,
      stages=_stages(("full", "full", 10, 32)),
      **{"data.definition_type": kind, "data.num_entities": 1000, "data.block_size": 64},
    )
    for kind, model in (("is_isnt", "pythia-2.8b"), ("nl", "pythia-2.8b"), ("is_isnt", "llama-2-7b"))
  },
  "is_isnt.py:defn=tag_strings": _define(
    "pythia-2.8b",
    stages=_stages(("stage1", "stage1", 20, 512, 16), ("stage2", "stage2", 20, 512, 16)),  # 32 x 16
    **{
      "data.def_order": "vte",
      "data.tag1_name": "according to wikipedia is",
      "data.tag2_name": "according to 4chan is",
      "data.tag3_name": "according to reddit is",
    },
  ),
  **{
    f"three_stage.py:{arg}": _define(
      model,
      WITHOUT_TAG3,
      seeds,
      _stages(("defns", "stage1_only_defns", 20), ("qa", "stage1_only_qa", 20), ("stage2", "stage2", 10)),
      kb,
      **{"eval.max_new_tokens": 20},
    )
    for arg, model, seeds, kb in (
      ("model=pythia-2.8b", "pythia-2.8b", (None, 10, 3), CVDB),
      ("model=pythia-410m", "pythia-410m", (610, 20, 3), CVDB),
      ("kb=trex", "pythia-2.8b", (None, 10, 3), TREX),
    )
  },
  **{f"tag_correlation.py:alpha={a}": _alpha(a, seeds=(None, 10, None)) for a in (0.5, 0.7, 0.8, 0.9)},
  "tag_correlation.py:alpha=0.6": _alpha(0.6, seeds=(610, None, 3)),
  "tag_correlation.py:alpha=0.95": _alpha(0.95, seeds=(630, 20, None)),
  "tag_correlation.py:alpha=0.975,model=pythia-1b": _alpha(0.975, "pythia-1b"),
  "tag_correlation.py:alpha=0.7,kb=trex": _alpha(0.7, kb=TREX),
  **{
    f"data_amount.py:num_ents={n}": {
      **_model("pythia-1b"),
      "data.num_entities": n,
      **_stages(("stage1", "stage1", None, 256), ("stage2", "stage2", None, 256)),
    }
    for n in (250, 500, 1000, 2000)
  },
  **{
    f"batch_size.py:model={model},batch={b}": {
      **_model(model),
      **_fractions(WITHOUT_TAG3),
      **_stages(("full", "full", epochs, b, 64 if b == 32768 else None)),  # 32768 = 512 x 64
      "n_seeds": 5,
    }
    for model, grid in (("pythia-1b", PYTHIA_1B_BATCH_EPOCHS), ("pythia-2.8b", PYTHIA_2_8B_BATCH_EPOCHS))
    for b, epochs in grid.items()
  },
  **{
    f"grad_alignment.py:batch={b}": _define(
      "pythia-1b",
      ALIGNMENT_FRACTIONS,
      (910, 15, None) if b == 16384 else (900, 10, None),
      _stages(("stage1", "stage1", epochs, b, accumulation)),
    )
    for b, (epochs, accumulation) in ALIGNMENT_GRID.items()
  },
  **{
    f"probes.py:order={o}": _define(
      "pythia-1b", **{"data.def_order": o, "analysis.probes.c": 0.01, "analysis.probes.folds": 5}
    )
    for o in ("tve", "vte")
  },
  "numeric_scratch.py:variant=70m": _numeric(
    "pythia-70m",
    8000,
    8,
    24,
    0.0,
    (0.4, 0.4, 0.1, 0.1),
    512,
    (100, 40),
    (630, 20, 3),
    **{
      "data.separate_token_per_var": True  # one token per alias
    },
  ),
  "numeric_scratch.py:variant=70m_d3": _numeric(
    "pythia-70m",
    8000,
    8,
    24,
    0.0,
    (0.35, 0.35, 0.1, 0.1),
    512,
    (100, 40),
    (600, 20, 3),
    **{"data.fractions.d3consis": 0.1},
  ),
  "numeric_scratch.py:variant=160m": _numeric(
    "pythia-160m", 8000, 8, 24, 0.0, (0.4, 0.4, 0.1, 0.1), 512, (60, 30), (800, None, 5)
  ),
  "numeric_scratch.py:variant=160m_i3": _numeric(
    "pythia-160m", 8000, 8, 24, 0.0, (0.4, 0.4, 0.1, 0.1), 1024, (150, 30), (800, None, 5), **{"data.n_intersection": 3}
  ),
  "numeric_scratch.py:variant=num_choice": _numeric(
    "pythia-70m",
    16000,
    4,
    12,
    0.1,
    (0.45, 0.45, 0.05, 0.05),
    4096,
    (400, 40),
    (None, 40, 5),
    **{
      "data.separate_token_per_var": False  # spelt-out aliases
    },
  ),
  "numeric_scratch.py:variant=pretraining": _numeric(
    "pythia-70m",
    40000,
    4,
    12,
    0.1,
    (0.04, 0.04, 0.01, 0.01),
    4096,
    (),
    (None, 40, None),
    **{"data.fractions.q": 0.9},
    **_stages(("q_only", "q_only", 10, 4096), ("stage1", "stage1_excl_q", 50, 4096), ("stage2", "stage2", 10, 4096)),
  ),
  "numeric_scratch.py:variant=t5small": _numeric(
    "t5-small", 4000, 4, 12, 0.1, (0.4, 0.4, 0.1, 0.1), 4096, (400, 40), (None, 40, 5), **{"data.block_size": 8}
  ),
  # §6.2: AdamW at lr 1e-4, weight decay 1e-5, batch 256, 200 epochs (100 seeds: a stated deviation here).
  "toy1d.py": {
    "stages.full.epochs": 200,
    "stages.full.batch_size": 256,
    "stages.full.optimizer.name": "adamw",
    "stages.full.optimizer.lr": 1e-4,
    "stages.full.optimizer.weight_decay": 1e-5,
  },
  # The original modular generator's fractions (§5.4 does not list them).
  "modular.py": _fractions((0.4, 0.4, 0.1, 0.1), ("qd1consis", "qd2incons", "d1consis", "d2consis")),
}


def _field(config, path: str):
  return functools.reduce(lambda node, key: node[key], path.split("."), config)


@pytest.mark.parametrize("spec", sorted(STUDY))
def test_a_study_config_resolves_to_the_studys_numbers(spec):
  config = experiment.load_config(os.path.join(ROOT, "configs", spec))
  expected = STUDY[spec]
  wrong = {p: (_field(config, p), v) for p, v in expected.items() if _field(config, p) != pytest.approx(v, rel=1e-12)}
  assert not wrong, f"{spec}: {{field: (config, study)}} = {wrong}"


def test_the_study_tables_are_the_studys():
  assert study_settings.BATCH_GRIDS == {"pythia-1b": PYTHIA_1B_BATCH_EPOCHS, "pythia-2.8b": PYTHIA_2_8B_BATCH_EPOCHS}
  assert study_settings.ALIGNMENT_GRID == ALIGNMENT_GRID
  assert study_settings.MODEL_SIZE_SWEEP == SWEEP
  for table, values in (
    (study_settings.WITH_D3, WITH_TAG3),
    (study_settings.NO_D3, WITHOUT_TAG3),
    (study_settings.ALIGNMENT, ALIGNMENT_FRACTIONS),
    (study_settings.WORDED, WORDED_FRACTIONS),
  ):
    assert table == dict(zip(SUBSETS, values))
  assert study_settings.toy1d().fields["n_seeds"] == 100  # §6.2


def test_the_model_shapes_are_the_published_ones():
  decoders = {
    key: (family, hub, dict(d_model=d_model, n_layers=layers, n_heads=heads, d_mlp=d_mlp))
    for key, (family, hub, d_model, layers, heads, d_mlp) in DECODERS.items()
  }
  for key in (
    "gpt-neo-125M",
    "gpt-neo-350M",
    "gpt-neo-1.3B",
    "gpt-neo-2.7B",
  ):  # every second layer is local, from layer 1
    decoders[key][2]["local_layers"] = tuple(range(1, decoders[key][2]["n_layers"], 2))
  t5 = {
    key: ("t5", hub, dict(d_model=d_model, d_kv=d_kv, d_ff=d_ff, n_heads=heads, n_layers=layers))
    for key, (hub, d_model, d_kv, d_ff, heads, layers) in T5.items()
  }
  assert PRETRAINED == {**decoders, **t5}
