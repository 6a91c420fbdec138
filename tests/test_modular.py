"""Modular arithmetic, fixed: formats, aliases in test prompts, truly inconsistent definitions, residues that
never identify x, the baseline as a train subset, determinism."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from iml_jax import config_blocks as blocks
from iml_jax.data import modular
from iml_jax.errors import IMLError


@pytest.fixture(scope="module")
def task():
  return modular.ModularTask(blocks.modular_data(num_x=200), seed=3, seed_stage2=0)


def _number(text):
  return int(text.replace(" ", ""))


def test_counts_and_formats(task):
  data = task.stage_data("stage1")
  assert [len(task.subsets[s]) for s in modular.SUBSETS] == [80, 80, 20, 20]
  assert len(data.train) == 160 * 4 + 160  # four residue QAs per stage-1 alias, one definition each
  qa = data.evals["qd1consis"][0]
  assert re.fullmatch(r"([a-z] ){4}\d \d =", qa.prompt) and re.fullmatch(r" \d \d", qa.completion)
  definition = data.evals["train_defs_d1consis"][0]
  assert re.fullmatch(r"[a-z] [a-z] % ([a-z] ){4}=", definition.prompt)
  assert re.fullmatch(r"( \d){5}", definition.completion)
  assert len(set(modular.VOCABULARY)) == 40


def test_test_prompts_use_aliases_and_held_out_moduli(task):
  data = task.stage_data("stage1")
  for subset in modular.SUBSETS:
    for ex in data.evals[subset]:
      words = ex.prompt.split()
      alias, modulus = "".join(words[:4]), int("".join(words[4:6]))
      assert alias in task.x  # the alias, never the number (bug #9.1)
      assert modulus not in task.train_moduli[alias]
      assert _number(ex.completion) == task.x[alias] % modulus
  assert sum(len(data.evals[s]) for s in modular.SUBSETS) == 200 * 6


def test_training_residues_never_identify_x(task):
  candidates = np.arange(1, modular.MAX_NUMBER + 1)
  for alias, moduli in task.train_moduli.items():
    matches = np.all([candidates % m == task.x[alias] % m for m in moduli], axis=0)
    assert matches.sum() > 1 and len(moduli) == 4


def test_inconsistent_definitions_define_another_number(task):
  data = task.stage_data("full")
  defined = {"".join(ex.prompt.split()[3:7]): _number(ex.completion) for ex in data.evals["train_defs_qd2incons"]}
  assert len(defined) == 80 and all(defined[a] != task.x[a] for a in defined)  # bug #9.2: really inconsistent
  assert sorted(defined.values()) == sorted(task.x[a] for a in defined)  # a derangement of the subset's numbers
  consistent = data.evals["train_defs_d2consis"]
  assert all(_number(ex.completion) == task.x["".join(ex.prompt.split()[3:7])] for ex in consistent)
  tags = {" ".join(ex.prompt.split()[:2]) for ex in data.evals["train_defs_qd2incons"]}
  assert tags == {" ".join(ex.prompt.split()[:2]) for ex in consistent} and len(tags) == 1


def test_baseline_is_a_train_subset_with_an_80_20_split(task):
  data = task.stage_data("baseline")  # bug #9.3: the original's loader raised TypeError here
  assert len(data.train) == 1600 and len(data.evals["baseline_test"]) == 400
  assert not {ex.prompt for ex in data.train} & {ex.prompt for ex in data.evals["baseline_test"]}
  for ex in data.train[:50]:
    words = ex.prompt.split()
    assert _number(ex.completion) == _number("".join(words[:5])) % int("".join(words[5:7]))


def test_deterministic_across_processes(task):
  code = (
    "import json; from iml_jax import config_blocks as blocks; from iml_jax.data import modular; "
    "t = modular.ModularTask(blocks.modular_data(num_x=200), 3, 0); "
    "print(json.dumps([e.text for e in t.stage_data('full').train]))"
  )
  runs = [
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONHASHSEED": s})
    for s in ("1", "2")
  ]
  assert runs[0].returncode == 0, runs[0].stderr
  assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout) == [e.text for e in task.stage_data("full").train]


def test_bad_config():
  with pytest.raises(IMLError, match="data.num_x = 2"):
    modular.ModularTask(blocks.modular_data(num_x=2), 0, 0)
  with pytest.raises(IMLError, match="train_subset = 'stage3'"):
    modular.ModularTask(blocks.modular_data(num_x=40), 0, 0).stage_data("stage3")


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_tiny_run_through_main(tmp_path):
  from test_experiment import ROOT

  for arg in ("tiny", "tiny,baseline"):
    result = subprocess.run(
      [sys.executable, "-m", "iml_jax.main", f"--config=configs/modular.py:{arg}", f"--workdir={tmp_path / arg}"],
      cwd=ROOT,
      capture_output=True,
      text=True,
    )
    assert result.returncode == 0, result.stderr
  assert {"d1consis", "d2consis"} <= set(json.load(open(tmp_path / "tiny" / "summary.json"))["subsets"])
  assert ",baseline_test," in (tmp_path / "tiny,baseline" / "results.csv").read_text()
