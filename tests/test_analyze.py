"""The analyses on a finished tiny run's checkpoints, through the command line."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from iml_jax import analyze, experiment
from iml_jax.errors import IMLError
from test_experiment import ROOT, tiny_config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  experiment.run(tiny_config(n_seeds=2), str(workdir))
  return workdir


def _analyze(*args):
  return subprocess.run([sys.executable, "-m", "iml_jax.analyze", *args], cwd=ROOT, capture_output=True, text=True)


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_grad_alignment_on_saved_checkpoints(finished_run):
  result = _analyze(
    f"--workdir={finished_run}",
    "--analysis=grad_alignment",  # the config the run saved
    "--set=analysis.grad_alignment.max_definitions=3",
  )
  assert result.returncode == 0, result.stderr
  printed = result.stdout.strip().splitlines()
  assert any(line.startswith("stage2 (epoch ") and "cos(d1consis) - cos(d2consis) = " in line for line in printed)
  assert len(printed) < 15 and "summary.json" in printed[-1]  # a verdict and a table, the JSON in a file
  summary = json.load(open(finished_run / "summary.json"))
  stage2 = summary["grad_alignment"]["stage2"]
  assert {"d1consis", "d2consis", "all", "cos_gap"} <= set(stage2)
  assert -1 <= stage2["d1consis"]["cos"]["mean"] <= 1 and stage2["all"]["variance"]["mean"] > 0
  assert stage2["d1consis"]["cos"]["ci95"] is not None  # two stage-1 seeds
  stage2 = finished_run / "seed_1" / "s2seed_0" / "stage2"
  records = [json.loads(line) for line in open(stage2 / "grad_alignment.jsonl")]
  assert {r["set"] for r in records} == {"d1consis", "d2consis", "all"}
  assert len(records[0]["cos"]) == 3  # max_definitions
  metrics = [json.loads(line) for line in open(finished_run / "metrics.jsonl")]
  assert any("grad/d1consis_cos" in m for m in metrics)

  for seed, batch in (("a", 32), ("b", 128)):  # the batch-size figure from two such workdirs
    copy = finished_run.parent / f"bs_{seed}"
    copy.mkdir(exist_ok=True)
    config = json.load(open(finished_run / "config.json"))
    config["stages"]["stage1"]["batch_size"] = batch
    json.dump(config, open(copy / "config.json", "w"))
    shutil.copy(finished_run / "summary.json", copy / "summary.json")
  out = finished_run.parent / "plot.png"
  result = _analyze(
    "--analysis=alignment_vs_batch",
    f"--workdirs={finished_run.parent / 'bs_a'},{finished_run.parent / 'bs_b'}",
    f"--out={out}",
  )
  assert result.returncode == 0, result.stderr
  assert out.stat().st_size > 1000
  printed = result.stdout.strip().splitlines()
  assert printed[0] == "alignment vs batch size: tag A's advantage does not fall from batch 32 to 128"  # one summary
  assert [line.split()[1] for line in printed[1:3]] == ["32", "128"]


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_probes_on_saved_checkpoints(finished_run):
  result = _analyze("--config=configs/default.py:tiny", f"--workdir={finished_run}", "--analysis=probes")
  assert result.returncode == 0, result.stderr
  assert "\nlinear probes: best accuracy " in result.stdout and "\n  seed 0: " in result.stdout
  table = json.load(open(finished_run / "seed_0" / "stage1" / "probes.json"))
  accuracy = table["accuracy_position_by_layer"]
  assert len(accuracy) == len(table["example_tokens"]) and len(accuracy[0]) == 1  # one layer in the tiny model
  assert os.path.exists(finished_run / "plots" / "probes_seed_1.png")


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_analysis_errors_name_the_field(finished_run, tmp_path):
  result = _analyze(
    "--config=configs/default.py:tiny",
    f"--workdir={finished_run}",
    "--analysis=probes",
    "--config.analysis.probes.classes=qd1consis,nope",
  )
  assert result.returncode == 2 and "analysis.probes.classes" in result.stderr
  result = _analyze("--config=configs/default.py:tiny", f"--workdir={tmp_path}", "--analysis=grad_alignment")
  assert result.returncode == 2 and "no finished stage" in result.stderr
  result = _analyze("--analysis=alignment_vs_batch", f"--workdirs={tmp_path}", f"--out={tmp_path}/x.png")
  assert result.returncode == 2 and "no readable config.json and summary.json" in result.stderr


@pytest.fixture()
def saved_run(tmp_path):
  """A workdir holding only the config a run saved."""
  experiment.guard_workdir(tiny_config(n_seeds=2), str(tmp_path))
  return tmp_path


def test_the_saved_config_is_read_and_analysis_settings_change_with_their_types(saved_run):
  config = analyze.run_config(
    None,
    str(saved_run),
    ["analysis.grad_alignment.max_definitions=3", "analysis.probes.c=0.5", "analysis.grad_alignment.enabled=true"],
  )
  assert config.n_seeds == 2 and config.stages.stage1.epochs == tiny_config().stages.stage1.epochs
  assert config.analysis.grad_alignment.max_definitions == 3 and config.analysis.probes.c == 0.5
  assert config.analysis.grad_alignment.enabled is True
  given = tiny_config()
  assert analyze.run_config(given, str(saved_run), []) is given


@pytest.mark.parametrize(
  "config, settings, message",
  [
    (None, ["stages.stage1.epochs=9"], "expected field=value with a field under analysis. or eval.batch_size"),
    (None, ["analysis.probes.nope=1"], "the config has no field analysis.probes.nope"),
    (None, ["analysis.probes.folds=many"], "expected a value of type int"),
    (None, ["analysis.grad_alignment.enabled=yes"], "expected true or false"),
    ("file", ["analysis.probes.c=1"], "with --config, use --config.<field>=<value>"),
  ],
)
def test_bad_settings_are_one_line(saved_run, config, settings, message):
  with pytest.raises(IMLError, match=re.escape(message)):
    analyze.run_config(tiny_config() if config else None, str(saved_run), settings)


def test_a_workdir_without_a_saved_config_asks_for_one(tmp_path):
  with pytest.raises(IMLError, match="holds no saved config .*; pass the run's --config"):
    analyze.run_config(None, str(tmp_path), [])


def test_a_config_file_of_another_run_suggests_the_saved_one(saved_run):
  with pytest.raises(
    IMLError,
    match="differing fields: n_seeds .*Leave out --config to analyse with the config the "
    r"run saved \(config.json\)$",
  ):
    analyze.grad_alignment_on_checkpoints(tiny_config(n_seeds=3), str(saved_run))


@pytest.mark.parametrize("config, task", [("vision.py", "vision"), ("toy1d.py", "toy1d")])
def test_text_analyses_refuse_an_array_task(tmp_path, config, task):
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "iml_jax.analyze",
      f"--config=configs/{config}:tiny",
      f"--workdir={tmp_path}",
      "--analysis=probes",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 2
  assert f"--analysis=probes reads token sequences; config field task = '{task}' has arrays" in result.stderr
