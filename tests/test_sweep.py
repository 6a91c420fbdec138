"""Sweeps: the product of values, casting, resume without recomputing, printed commands, a real sweep."""

import json
import os
import shlex
import subprocess
import sys

import pytest

from iml_jax import experiment, io_utils, sweep, sweep_report
from iml_jax.errors import IMLError
from iml_jax.workdir import plan_stage_runs
from iml_jax.specs import Experiment
from test_experiment import ROOT, tiny_config


def test_plan_is_the_product_in_flag_order_with_typed_values():
  config = tiny_config()
  axes, runs = sweep.plan(
    config, ["seed=0,1", "stages.stage2.batch_size=16,32,64", "mesh.shape=[(1,1,1),(-1,1,1)]", "tensorboard=false"]
  )
  assert [f for f, _ in axes] == ["seed", "stages.stage2.batch_size", "mesh.shape", "tensorboard"]
  assert len(runs) == 2 * 3 * 2
  assert runs[0].name == "seed=0,stages.stage2.batch_size=16,mesh.shape=(1,1,1),tensorboard=false"
  assert runs[1].values == {"seed": 0, "stages.stage2.batch_size": 16, "mesh.shape": (-1, 1, 1), "tensorboard": False}
  assert [r.values["seed"] for r in runs] == [0] * 6 + [1] * 6
  changed = sweep.run_config(config, runs[-1])
  assert (changed.seed, changed.stages.stage2.batch_size, changed.mesh.shape) == (1, 64, (-1, 1, 1))
  assert config.stages.stage2.batch_size != 64 or config.seed == 0  # the base config is left alone


@pytest.mark.parametrize(
  "spec, message",
  [
    ("stages.stage9.epochs=1,2", "--sweep field stages.stage9.epochs: the config has no field 'stage9'"),
    ("seed=a,b", "--sweep field seed: 'a' is not a int"),
    ("seed=1,1", "values must be non-empty and distinct"),
    ("seed", "expected FIELD=V1,V2"),
    ("bogus=1", "--sweep field bogus: the config has no such field"),
  ],
)
def test_bad_sweeps_name_the_field(spec, message):
  with pytest.raises(IMLError, match=message.replace("(", r"\(").replace(")", r"\)")):
    sweep.plan(tiny_config(), [spec])


def _fake_runs(monkeypatch, fail_at=None):
  started = []

  def fake_run(config, workdir):
    started.append(os.path.basename(workdir))
    if len(started) == fail_at:
      raise KeyboardInterrupt  # killed mid-run: no summary.json
    for seed in range(config.seed, config.seed + config.n_seeds):
      for stage_run in plan_stage_runs(Experiment.from_config(config), workdir, seed):
        io_utils.atomic_write_json(os.path.join(stage_run.directory, "DONE"), {})
    io_utils.atomic_write_json(
      os.path.join(workdir, "summary.json"), {"seed": config.seed, "lr": config.stages.stage1.optimizer.lr}
    )

  monkeypatch.setattr(experiment, "run", fake_run)
  monkeypatch.setattr(sweep_report, "write_sweep_report", lambda workdir: {"reported": workdir})
  return started


def test_interrupted_sweep_resumes_without_recomputing(storage_root, monkeypatch):
  specs = ["seed=0,1", "stages.stage1.optimizer.lr=0.001,0.01"]
  started = _fake_runs(monkeypatch, fail_at=3)
  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(tiny_config(n_seeds=1), storage_root, specs, "configs/default.py:tiny", [])
  assert started == [
    "seed=0,stages.stage1.optimizer.lr=0.001",
    "seed=0,stages.stage1.optimizer.lr=0.01",
    "seed=1,stages.stage1.optimizer.lr=0.001",
  ]
  started = _fake_runs(monkeypatch)
  assert sweep.run_sweep(tiny_config(n_seeds=1), storage_root, specs, "configs/default.py:tiny", []) == {
    "reported": storage_root
  }
  assert started == ["seed=1,stages.stage1.optimizer.lr=0.001", "seed=1,stages.stage1.optimizer.lr=0.01"]
  assert io_utils.read_json(f"{storage_root}/seed=1,stages.stage1.optimizer.lr=0.01/summary.json") == {
    "seed": 1,
    "lr": 0.01,
  }
  started = _fake_runs(monkeypatch)
  sweep.run_sweep(tiny_config(n_seeds=1), storage_root, specs, "configs/default.py:tiny", [])
  assert started == []


def test_a_directory_of_another_sweep_is_refused(storage_root, monkeypatch):
  _fake_runs(monkeypatch)
  sweep.run_sweep(tiny_config(n_seeds=1), storage_root, ["seed=0,1"], "configs/default.py:tiny", [])
  with pytest.raises(IMLError, match=r"holds another sweep \(axes: .*runs:"):
    sweep.run_sweep(tiny_config(n_seeds=1), storage_root, ["seed=0,2"], "configs/default.py:tiny", [])
  with pytest.raises(IMLError, match=r"holds another sweep \(overrides: \[\] -> \['--config.n_seeds=2'\]"):
    sweep.run_sweep(
      tiny_config(n_seeds=1), storage_root, ["seed=0,1"], "configs/default.py:tiny", ["--config.n_seeds=2"]
    )


def test_a_seed_sweep_whose_runs_overlap_in_seeds_is_refused(tmp_path, monkeypatch):
  """The README's first sweep once trained 6 runs on 4 distinct seeds: seed=0,1,2 with n_seeds = 2."""
  started = _fake_runs(monkeypatch)
  with pytest.raises(
    IMLError,
    match=r"runs seed=0,stages.stage2.optimizer.lr=0.001 and seed=1,stages.stage2."
    r"optimizer.lr=0.001 would both train stage-1 seed\(s\) \[1\]",
  ):
    sweep.run_sweep(
      tiny_config(n_seeds=2),
      str(tmp_path),
      ["seed=0,1,2", "stages.stage2.optimizer.lr=0.001,0.003"],
      "configs/default.py:tiny",
      [],
    )
  assert started == [] and not os.path.exists(tmp_path / "sweep.json")
  sweep.run_sweep(tiny_config(n_seeds=2), str(tmp_path), ["seed=0,2,4"], "configs/default.py:tiny", [])
  assert started == ["seed=0", "seed=2", "seed=4"]


def test_invalid_run_values_stop_before_any_run(tmp_path, monkeypatch):
  started = _fake_runs(monkeypatch)
  with pytest.raises(IMLError, match="stages.stage1.batch_size"):
    sweep.run_sweep(tiny_config(), str(tmp_path), ["stages.stage1.batch_size=8,0"], "configs/default.py:tiny", [])
  assert started == [] and not os.path.exists(tmp_path / "sweep.json")


def test_printed_commands_cover_unfinished_runs(tmp_path, monkeypatch, capsys):
  _fake_runs(monkeypatch)
  finished = tmp_path / "seed=0,mesh.shape=(1,1,1)"
  config = tiny_config(n_seeds=1)
  config.mesh.shape = (1, 1, 1)
  for seed in range(config.n_seeds):
    for stage_run in plan_stage_runs(Experiment.from_config(config), str(finished), seed):
      os.makedirs(stage_run.directory)
      open(os.path.join(stage_run.directory, "DONE"), "w").write("{}")
  open(finished / "summary.json", "w").write("{}")
  os.makedirs(tmp_path / "seed=1,mesh.shape=(1,1,1)")
  open(tmp_path / "seed=1,mesh.shape=(1,1,1)" / "summary.json", "w").write("{}")  # a report of a partial run
  assert (
    sweep.run_sweep(
      tiny_config(n_seeds=1),
      str(tmp_path),
      ["seed=0,1", "mesh.shape=[(1,1,1)]"],
      "configs/default.py:tiny",
      ["--config.n_seeds=1"],
      print_commands=True,
    )
    is None
  )
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 2 and lines[1].startswith("# then: python -m iml_jax.report")
  words = shlex.split(lines[0])
  assert words[1:] == [
    "-m",
    "iml_jax.main",
    "--config=configs/default.py:tiny",
    f"--workdir={tmp_path}/seed=1,mesh.shape=(1,1,1)",
    "--config.n_seeds=1",
    "--config.seed=1",
    "--config.mesh.shape=(1, 1, 1)",
  ]


def test_real_sweep_pools_seed_runs_and_reports(tmp_path):
  """Two one-seed runs through the CLI: the report pools them as two stage-1 seeds of one setting."""
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "iml_jax.sweep",
      "--config=configs/default.py:tiny",
      f"--workdir={tmp_path}",
      "--sweep=seed=3,4",
      "--config.progress_bar=False",
      "--config.n_seeds=1",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  summary = json.load(open(tmp_path / "summary.json"))
  (setting,) = summary["settings"]
  assert setting["values"] == {} and setting["runs"] == ["seed=3", "seed=4"]
  per_run = [
    json.load(open(tmp_path / run / "summary.json"))["subsets"]["d1consis"]["em_per_seed"][0] for run in setting["runs"]
  ]
  assert setting["summary"]["subsets"]["d1consis"]["em_per_seed"] == pytest.approx(per_run)
  assert setting["summary"]["n_seeds"] == 2 and setting["summary"]["iml_gap"]["ci95"] is not None
  header = open(tmp_path / "results.csv").readline().strip().split(",")
  assert header == ["run", "seed", "seed_stage2", "stage", "epoch", "global_epoch", "subset", "em", "f1"]
  report_md = open(tmp_path / "report.md").read()
  assert "| all runs | 2 |" in report_md and os.path.exists(tmp_path / "plots" / "em_all_runs.png")
  again = subprocess.run(
    [sys.executable, "-m", "iml_jax.report", f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True
  )
  assert again.returncode == 0, again.stderr
  assert json.load(open(tmp_path / "summary.json")) == summary
