"""Every entry point explains its flags with --help."""

import subprocess
import sys

import pytest

from test_experiment import ROOT

ENTRY_POINTS = {
  "iml_jax.main": (
    "--config",
    "--workdir",
    "--[no]distributed",
    "--[no]print_config",
    "--compilation_cache",
  ),
  "iml_jax.sweep": (
    "--config",
    "--workdir",
    "--sweep",
    "--[no]print_commands",
    "--[no]print_config",
    "--compilation_cache",
  ),
  "iml_jax.report": ("--workdir",),
  "iml_jax.analyze": ("--config", "--workdir", "--analysis", "--workdirs", "--out", "--compilation_cache"),
  "iml_jax.export_hf": ("--workdir", "--stage", "--out"),
}


@pytest.mark.parametrize("module", sorted(ENTRY_POINTS))
def test_help_explains_the_flags(module):
  result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 1 and not result.stderr, result.stderr  # absl's --help exits with status 1
  assert f"python -m {module}" in result.stdout  # the module docstring: what it does and how to call it
  for flag in ENTRY_POINTS[module]:
    assert f"  {flag}" in result.stdout, f"{module} --help does not describe {flag}"


def test_the_cluster_comes_from_the_environment_when_jax_cannot_detect_it():
  from iml_jax import main

  assert main.cluster_from_environment({}) == {}  # Cloud TPU VMs: JAX asks the metadata server
  assert main.cluster_from_environment({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}) == dict(
    num_processes=2, process_id=1
  )
  with pytest.raises(ValueError, match="set both JAX_NUM_PROCESSES and JAX_PROCESS_ID, or neither"):
    main.cluster_from_environment({"JAX_NUM_PROCESSES": "2"})
  with pytest.raises(ValueError, match="must be integers"):
    main.cluster_from_environment({"JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"})


def test_what_main_imports_before_joining_the_cluster_leaves_the_backend_unstarted():
  """`jax.distributed.initialize` refuses once the XLA backend has started (a jnp array made at import starts
  it), so every TPU pod run with --distributed depends on this."""
  code = (
    "from iml_jax import experiment, preemption; from jax._src import xla_bridge; "
    "print(xla_bridge.backends_are_initialized())"
  )
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "False"


def test_print_config_shows_the_resolved_config_and_runs_nothing(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "iml_jax.main", "--config=configs/default.py:tiny", "--config.n_seeds=3", "--print_config"],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  assert "\nn_seeds: 3\n" in result.stdout and "deviations:" in result.stdout
  swept = subprocess.run(
    [
      sys.executable,
      "-m",
      "iml_jax.sweep",
      "--config=configs/default.py:tiny",
      f"--workdir={tmp_path / 'sweep'}",
      "--sweep=seed=0,2",
      "--print_config",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert swept.returncode == 0, swept.stderr
  assert swept.stdout.endswith("sweep runs (each: the config above with these values):\n  seed=0\n  seed=2\n")
  assert not (tmp_path / "sweep").exists()
