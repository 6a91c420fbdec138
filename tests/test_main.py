"""Every entry point explains its flags with --help."""
import subprocess
import sys

import pytest

from test_experiment import ROOT

ENTRY_POINTS = {
    "iml_jax.main": ("--config", "--workdir", "--[no]distributed"),
    "iml_jax.sweep": ("--config", "--workdir", "--sweep", "--[no]print_commands"),
    "iml_jax.report": ("--workdir",),
    "iml_jax.analyze": ("--config", "--workdir", "--analysis", "--workdirs", "--out"),
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
  assert main.cluster_from_environment({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}) == dict(num_processes=2,
                                                                                                  process_id=1)
  with pytest.raises(ValueError, match="set both JAX_NUM_PROCESSES and JAX_PROCESS_ID, or neither"):
    main.cluster_from_environment({"JAX_NUM_PROCESSES": "2"})
  with pytest.raises(ValueError, match="must be integers"):
    main.cluster_from_environment({"JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"})
