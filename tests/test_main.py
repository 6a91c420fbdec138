"""Every entry point explains its flags with --help."""

import os
import subprocess
import sys

import pytest

from test_experiment import ROOT
from test_host_malloc import TCMALLOC_INSTALLED, huge_pages_unavailable

ENTRY_POINTS = {
  "iml_jax.main": (
    "--config",
    "--workdir",
    "--[no]distributed",
    "--[no]print_config",
    "--compilation_cache",
    "--host_malloc",
  ),
  "iml_jax.sweep": (
    "--config",
    "--workdir",
    "--sweep",
    "--[no]print_commands",
    "--[no]print_config",
    "--compilation_cache",
    "--host_malloc",
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


def _run_tiny(workdir, *flags, module="iml_jax.main", env=None):
  return subprocess.run(
    [sys.executable, "-m", module, "--config=configs/default.py:tiny", f"--workdir={workdir}", *flags],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env={**os.environ, **(env or {})},
  )


@pytest.mark.parametrize(
  "module, program, flags",
  [("iml_jax.main", "iml_jax", ()), ("iml_jax.sweep", "iml_jax.sweep", ("--sweep=seed=0,1",))],
)
def test_a_host_malloc_that_cannot_apply_stops_before_the_run_with_one_line(tmp_path, module, program, flags):
  # the state of a process that tcmalloc's preload failed to load into (see iml_jax.host_malloc)
  result = _run_tiny(
    tmp_path / "run",
    "--host_malloc=tcmalloc",
    *flags,
    module=module,
    env={"IML_JAX_HOST_MALLOC": "tcmalloc", "LD_PRELOAD": ""},
  )
  assert result.returncode == 2
  expected = f"{program}: error: host malloc 'tcmalloc': LD_PRELOAD='' did not take effect"
  assert result.stderr.strip().splitlines()[-1] == expected, result.stderr[-2000:]
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["reuse", "hugepages", "tcmalloc"])
def test_a_run_under_another_host_malloc_gives_the_same_results(tmp_path, choice):
  if choice == "tcmalloc" and not TCMALLOC_INSTALLED:
    pytest.skip("tcmalloc is not installed")
  if choice == "hugepages" and huge_pages_unavailable():
    pytest.skip(huge_pages_unavailable())
  for run in ("glibc", choice):
    result = _run_tiny(tmp_path / run, f"--host_malloc={run}")
    assert result.returncode == 0, result.stderr[-2000:]
  for name in ("results.csv", "summary.json", "metrics.jsonl"):
    assert (tmp_path / "glibc" / name).read_bytes() == (tmp_path / choice / name).read_bytes(), name
