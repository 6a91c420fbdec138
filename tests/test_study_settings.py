"""Every config and `:arg` variant against its row of iml_jax/study_settings.py (the study's numbers themselves are
checked against docs/study.md in test_study_numbers.py).

The row each variant is checked against is chosen here, independently of the config's own `study` field, so a
config that names the wrong row fails too. Each variant must equal its row on every field the study publishes,
except the fields its `deviations` name; and each deviation must still name a field that differs.
"""

import fnmatch
import os
import re

import pytest

from iml_jax import experiment, study_settings
from iml_jax.specs import Experiment
from test_experiment import ROOT
from test_study_numbers import ALIGNMENT_GRID, PYTHIA_1B_BATCH_EPOCHS, PYTHIA_2_8B_BATCH_EPOCHS, SWEEP

# (config[:arg], the study row it must reproduce)
VARIANTS = [
  ("default.py", "numeric:variant=70m"),
  ("default.py:faithful", "numeric:variant=70m"),
  ("default.py:reduced", "numeric:variant=70m"),
  ("pythia_cvdb_2stage.py", "cvdb_main"),
  *[(f"pythia_cvdb_2stage.py:model={m}", f"model_size:kb=cvdb,model={m}") for m in SWEEP],
  ("pythia_cvdb_2stage.py:model=llama-2-7b", "model_size:kb=cvdb,model=llama-2-7b"),
  ("trex_2stage.py", "trex_main"),
  *[(f"trex_2stage.py:model={m}", f"model_size:kb=trex,model={m}") for m in ("pythia-410m", "pythia-6.9b")],
  ("t5_cvdb_2stage.py", "t5_cvdb"),
  ("t5_cvdb_2stage.py:model=t5-small", "t5_cvdb"),
  *[
    (f"definition_order.py:order={o}", f"definition_order:order={o},model=pythia-2.8b")
    for o in ("tve", "tev", "vte", "vet", "etv", "evt")
  ],
  ("definition_order.py:order=evt,model=t5-3b", "definition_order:order=evt,model=t5-3b"),
  *[
    (f"tag_correlation.py:alpha={a}", f"tag_correlation:alpha={a},model=pythia-2.8b,kb=cvdb")
    for a in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
  ],
  ("tag_correlation.py:alpha=0.975,model=pythia-1b", "tag_correlation:alpha=0.975,model=pythia-1b,kb=cvdb"),
  ("tag_correlation.py:alpha=0.7,kb=trex", "tag_correlation:alpha=0.7,model=pythia-2.8b,kb=trex"),
  ("tag_correlation.py:cpu,alpha=0.5", "numeric:variant=70m"),
  *[(f"data_amount.py:num_ents={n}", f"data_amount:num_ents={n}") for n in (250, 500, 1000, 2000)],
  ("data_amount.py:cpu,num_ents=500", "numeric:variant=70m"),
  ("three_stage.py", "three_stage:model=pythia-2.8b,kb=cvdb"),
  ("three_stage.py:model=pythia-410m", "three_stage:model=pythia-410m,kb=cvdb"),
  ("three_stage.py:kb=trex", "three_stage:model=pythia-2.8b,kb=trex"),
  *[(f"batch_size.py:batch={b}", f"batch_size:batch={b},model=pythia-1b") for b in PYTHIA_1B_BATCH_EPOCHS],
  *[
    (f"batch_size.py:model=pythia-2.8b,batch={b}", f"batch_size:batch={b},model=pythia-2.8b")
    for b in PYTHIA_2_8B_BATCH_EPOCHS
  ],
  ("incontext.py", "incontext"),
  ("is_isnt.py:defn=is_isnt", "worded:defn=is_isnt,model=pythia-2.8b"),
  ("is_isnt.py:defn=nl", "worded:defn=nl,model=pythia-2.8b"),
  ("is_isnt.py:model=llama-2-7b", "worded:defn=is_isnt,model=llama-2-7b"),
  ("is_isnt.py:defn=tag_strings", "tag_strings"),
  ("grad_alignment.py", "grad_alignment:batch=128"),
  *[(f"grad_alignment.py:batch={b}", f"grad_alignment:batch={b}") for b in ALIGNMENT_GRID],
  ("grad_alignment.py:cpu,batch=128", "numeric:variant=70m"),
  ("probes.py:order=tve", "probes:order=tve"),
  ("probes.py:order=vte", "probes:order=vte"),
  *[
    (f"numeric_scratch.py:variant={v}", f"numeric:variant={v}")
    for v in ("70m", "70m_d3", "160m", "160m_i3", "num_choice", "pretraining", "t5small")
  ],
  ("numeric_scratch.py", "numeric:variant=70m"),
  ("define_synthetic.py", "cvdb_main"),
  ("modular.py", "modular"),
  ("modular.py:baseline", "modular"),
  ("vision.py", "vision"),
  ("toy1d.py", "toy1d"),
  ("toy1d.py:two_stage", "toy1d"),
]
TINY = [
  "default.py:tiny",
  "define_synthetic.py:tiny",
  "trex_2stage.py:tiny",
  "batch_size.py:batch=64,tiny",
  "three_stage.py:tiny",
  "incontext.py:tiny",
  "is_isnt.py:defn=is_isnt,tiny",
  "tag_correlation.py:cpu,alpha=0.5,tiny",
  "data_amount.py:cpu,num_ents=250,tiny",
  "modular.py:tiny",
  "vision.py:tiny",
  "toy1d.py:two_stage,tiny",
]


def _load(spec):
  return experiment.load_config(os.path.join(ROOT, "configs", spec))


def _undeclared(config):
  """(departures no deviation names, deviations that name no departing field)."""
  departed = study_settings.departures(config)
  patterns = {d: study_settings.covered_fields(d) for d in config.deviations}
  uncovered = {
    f: v for f, v in departed.items() if not any(fnmatch.fnmatchcase(f, p) for ps in patterns.values() for p in ps)
  }
  stale = [d for d, ps in patterns.items() if ps and not any(fnmatch.fnmatchcase(f, p) for p in ps for f in departed)]
  return uncovered, stale


@pytest.mark.parametrize("spec, row", VARIANTS + [(t, None) for t in TINY])
def test_config_matches_its_study_row_except_declared_deviations(spec, row):
  config = _load(spec)
  if row is not None:
    assert config.study == row
  uncovered, stale = _undeclared(config)
  assert not uncovered, f"{spec} departs from the study without a deviation: {uncovered}"
  assert not stale, f"{spec} declares deviations that no longer apply: {stale}"
  Experiment.from_config(config)


CPU_SCALE = (
  "default.py",
  "default.py:faithful",
  "default.py:reduced",
  "default.py:tiny",
  "tag_correlation.py:cpu,alpha=0.5",
  "data_amount.py:cpu,num_ents=500",
  "grad_alignment.py:cpu",
)


def _printed(config) -> str:
  return "\n".join(study_settings.deviations(config))


@pytest.mark.parametrize("spec", CPU_SCALE)
def test_a_cpu_scale_variant_states_its_own_size(spec):
  config = _load(spec)
  printed = _printed(config)
  assert f"data.num_x = {config.data.num_x} (study: 8000)" in printed
  assert f"model.d_model = {config.model.d_model} (study: 512)" in printed
  for name, stage in config.stages.items():
    study_epochs = {"stage1": 100, "stage2": 40}[name]
    listed = re.search(rf"stages\.(\{{[^}}]*\}}|{name})\.epochs = (\d+) \(study: {study_epochs}\)", printed)
    assert listed and int(listed.group(2)) == stage.epochs, (name, printed)


def _override(spec: str, path: str, value):
  config = _load(spec)
  *parents, leaf = path.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value
  return config


@pytest.mark.parametrize(
  "spec, path, value, listed",
  [
    ("default.py", "stages.stage1.epochs", 3, "stages.stage1.epochs = 3 (study: 100)"),
    ("default.py", "stages.stage2.optimizer.lr", 0.005, "stages.stage2.optimizer.lr = 0.005 (study: 5e-05)"),
    ("default.py", "data.n_nums", 6, "data.n_nums = 6 (study: 8)"),
    ("pythia_cvdb_2stage.py", "model.init_from", "", "model.pretrained weights = False (study: True)"),
    ("pythia_cvdb_2stage.py", "data.test_frac", 0.2, "data.test_frac = 0.2 (study: 0.1666666)"),
  ],
)
def test_a_command_line_override_is_listed_with_its_value_and_the_studys(spec, path, value, listed):
  config = _override(spec, path, value)
  assert listed in _printed(config)
  assert _printed(_load(spec)).count(listed) == 0


def test_a_field_is_listed_once_and_an_undone_deviation_disappears():
  config = _load("default.py")
  printed = _printed(config)
  assert printed.count("model.dtype =") == 1 and printed.count("stages.stage2.optimizer.lr =") == 1
  config.stages.stage2.trainable = "all"  # undoes one deviation: it is no longer listed
  assert not any("embedding rows" in d for d in study_settings.deviations(config))
  assert any("redrawn" in d for d in study_settings.deviations(config))
  assert study_settings.deviations(_override("pythia_cvdb_2stage.py", "data.test_frac", 0.2)) == [
    "data.test_frac = 0.2 (study: 0.1666666)"
  ]


def test_the_batch_in_fewer_passes_is_listed_with_why_the_update_is_the_same():
  """`:passes=1` (a TPU slice's choice) departs from the study's 128 x 2 on the number of passes only; the update
  is the same however the batch is split (tests/test_train.py, gradient accumulation against one big batch)."""
  config = _load("pythia_cvdb_2stage.py:passes=1")
  assert [s.grad_accum for s in config.stages.values()] == [1, 1]
  assert [s.batch_size for s in config.stages.values()] == [256, 256]
  (line,) = study_settings.deviations(config)
  assert "the update is the same up to rounding" in line
  assert line.endswith("[stages.{stage1,stage2}.grad_accum = 1 (study: 2)]")
  assert study_settings.deviations(_load("pythia_cvdb_2stage.py:passes=2")) == []
  assert "grad_accum = 1 (study: 2)" in _printed(_load("pythia_cvdb_2stage.py:model=pythia-410m,passes=1"))


@pytest.mark.parametrize("spec", ["trex_2stage.py:passes=1", "three_stage.py:passes=1", "incontext.py:passes=1"])
def test_one_pass_where_the_study_states_no_split_is_a_project_choice(spec):
  config = _load(spec)
  assert all(s.grad_accum == 1 for s in config.stages.values())
  assert not any("passes" in d for d in study_settings.deviations(config))
  assert "grad_accum = 1" in study_settings.describe_project_choices(config)


@pytest.mark.parametrize(
  "spec, listed",
  [
    ("data_amount.py:num_ents=3000", "data.num_entities = 3000 (study: one of 250, 500, 1000, 2000)"),
    ("tag_correlation.py:alpha=0.55", "alpha = 0.55 (study: one of 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)"),
    ("tag_correlation.py:alpha=0.975", "alpha = 0.975 (study: one of 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)"),
    ("tag_correlation.py:alpha=0.55,model=pythia-1b", "alpha = 0.55 (study: 0.6 to 0.975)"),
  ],
)
def test_an_argument_outside_the_studys_grid_is_a_deviation(spec, listed):
  assert listed in _printed(_load(spec))


@pytest.mark.parametrize(
  "spec",
  ["data_amount.py:num_ents=500", "tag_correlation.py:alpha=0.95", "tag_correlation.py:alpha=0.975,model=pythia-1b"],
)
def test_an_argument_on_the_studys_grid_is_not(spec):
  assert "outside the study" not in _printed(_load(spec))


@pytest.mark.parametrize(
  "spec, chosen",
  [
    ("trex_2stage.py", "stages.stage1.epochs = 20; stages.{stage1,stage2}.batch_size = 256"),
    ("t5_cvdb_2stage.py", "stages.stage1.epochs = 20"),
    ("tag_correlation.py:alpha=0.8", "seed = 600"),
    ("data_amount.py:num_ents=500", "stages.{stage1,stage2}.grad_accum = 2"),
    ("definition_order.py:order=tve,model=t5-3b", "seed = 700; n_seeds = 10"),
    ("grad_alignment.py:batch=4096", "stages.stage1.eval_every = 12"),
  ],
)
def test_values_the_study_does_not_state_are_project_choices_not_the_studys(spec, chosen):
  config = _load(spec)
  assert chosen in study_settings.describe_project_choices(config)
  for path in re.findall(r"([a-z_.{},0-9]+) = ", chosen):
    assert path not in study_settings.departures(config)


def test_the_study_configs_that_state_everything_have_no_project_choices():
  assert study_settings.describe_project_choices(_load("pythia_cvdb_2stage.py")) == ""
  assert "data.fractions" in study_settings.describe_project_choices(_load("trex_2stage.py"))


def test_every_config_the_readme_lists_is_checked():
  readme = open(os.path.join(ROOT, "README.md")).read()
  listed = set(re.findall(r"`configs/([a-z0-9_]+\.py(?::[^`]*)?)`", readme))
  checked = {spec for spec, _ in VARIANTS} | set(TINY)
  assert listed and listed <= checked, sorted(listed - checked)
  assert {f for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py")} <= {
    spec.split(":")[0] for spec in checked
  }


@pytest.mark.parametrize(
  "spec",
  [
    "pythia_cvdb_2stage.py",
    "trex_2stage.py",
    "probes.py:order=tve",
    "is_isnt.py:defn=is_isnt",
    "numeric_scratch.py:variant=70m",
    "grad_alignment.py:batch=512",
    "batch_size.py:batch=256",
  ],
)
def test_study_configs_are_faithful(spec):
  """The study's own experiments run as the study ran them: no deviation at all."""
  config = _load(spec)
  assert study_settings.departures(config) == {}
  assert study_settings.deviations(config) == []


def test_an_unknown_study_row_is_one_clear_error():
  from iml_jax.errors import IMLError

  config = _load("default.py:tiny")
  config.study = "numeric:variant=9b"
  with pytest.raises(IMLError, match="config field study = 'numeric:variant=9b'"):
    Experiment.from_config(config)


def test_a_swept_value_is_listed_as_the_run_used_it():
  from iml_jax import sweep

  base = _load("default.py")
  _, runs = sweep.plan(base, ["stages.stage1.epochs=7,45"])
  printed = [_printed(sweep.run_config(base, run)) for run in runs]
  assert "stages.stage1.epochs = 7 (study: 100)" in printed[0] and "stages.stage1.epochs = 45" in printed[1]


def test_a_data_amount_sweep_is_measured_against_the_studys_grid():
  from iml_jax import sweep

  base = _load("data_amount.py")
  _, runs = sweep.plan(base, ["data.num_entities=250,2000,3000"])
  printed = [_printed(sweep.run_config(base, run)) for run in runs]
  assert printed[:2] == ["", ""]
  assert printed[2] == "data.num_entities = 3000 (study: one of 250, 500, 1000, 2000)"
