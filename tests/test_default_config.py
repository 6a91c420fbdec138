"""The embedded default's scientific claim: the reduced default in every CI run, two full-size seeds as a slow test."""

import json
import os
import subprocess
import sys

import pytest

from test_experiment import ROOT


def _run_as_users_run(config: str, workdir, *overrides: str) -> dict:
  """`main` in its own process on one CPU device, compiled with XLA's defaults (not the tests' faster-compiling
  options, under which training runs far slower: tests/xla_flags.py); returns the run's summary."""
  subprocess.run(
    [sys.executable, "-m", "iml_jax.main", f"--config={config}", f"--workdir={workdir}", *overrides],
    cwd=ROOT,
    check=True,
    capture_output=True,
    env={**os.environ, "XLA_FLAGS": ""},
  )
  return json.load(open(workdir / "summary.json"))


@pytest.mark.slow
def test_default_shows_iml_on_every_seed(tmp_path):
  summary = _run_as_users_run("configs/default.py", tmp_path, "--config.n_seeds=2", "--config.progress_bar=False")
  assert all(gap > 0 for gap in summary["iml_gap"]["per_seed"])
  assert summary["subsets"]["qd1consis"]["em"] > 0.9  # Stage 1 generalised to held-out questions


@pytest.mark.first
def test_reduced_default_shows_iml_with_an_interval_that_excludes_zero(tmp_path):
  """The headline effect in CI (configs/default.py:reduced: 500 aliases, 35 Stage-1 epochs, 5 seeds): the IML
  gap's 95% interval over stage-1 seeds lies above 0, and Stage 1 generalised on every seed. Run as a user runs
  it, through main on one CPU device (8 fake devices would make each step an 8-way data-parallel one)."""
  summary = _run_as_users_run("configs/default.py:reduced", tmp_path, "--config.progress_bar=False")
  gap = summary["iml_gap"]
  assert gap["mean"] - gap["ci95"] > 0, gap
  assert gap["p_value"] < 0.01
  assert min(summary["subsets"]["qd1consis"]["em_per_seed"]) > 0.95
