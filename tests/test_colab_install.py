"""The Colab setup cell's decision against fake runtimes: a preinstalled jax stack within setup.py's ranges is kept
(pinned, so pip replaces nothing and no restart is needed); one outside them is replaced and the cell asks for a
restart. The real install in a simulated runtime is tests/test_colabs.py's."""

import sys

import pytest

from iml_jax import colab_install
from test_setup import setup_arguments


# jax 0.10.2's own Requires-Dist, as its wheel declares them (the extras this test reaches).
JAX_0_10_2_REQUIRES = [
  "jaxlib<=0.10.2,>=0.10.1",
  "numpy>=2.0",
  'jaxlib<=0.10.2,>=0.10.2; extra == "tpu"',
  'libtpu==0.0.42.*; extra == "tpu"',
  'requests; extra == "tpu"',
  'jaxlib<=0.10.2,>=0.10.2; extra == "cuda12"',
  'jax-cuda12-plugin[with-cuda]<=0.10.2,>=0.10.2; extra == "cuda12"',
]
# What Colab ships besides the stack, at the tested versions.
OTHERS = {"numpy": "2.4.6", "scipy": "1.17.1", "matplotlib": "3.11.2"}


@pytest.fixture(scope="module")
def requires_dist() -> list[str]:
  """iml-jax's Requires-Dist lines as pip reports them: setup.py's requirements, each extra's behind its marker."""
  captured = setup_arguments()
  extras = [f'{r}; extra == "{e}"' for e, rs in captured["extras_require"].items() for r in rs]
  return [*captured["install_requires"], *extras]


def test_a_compatible_tpu_stack_is_kept_and_nothing_preinstalled_is_replaced(requires_dist):
  installed = {"jax": "0.10.2", "jaxlib": "0.10.2", "libtpu": "0.0.42.1", **OTHERS}
  keep, why = colab_install.stack_to_keep(requires_dist, ["tpu"], installed, JAX_0_10_2_REQUIRES)
  assert keep == {"jax": "0.10.2", "jaxlib": "0.10.2", "libtpu": "0.0.42.1"}
  assert why == "keeping preinstalled jax 0.10.2, jaxlib 0.10.2, libtpu 0.0.42.1"
  # pip, held to `keep`, adds only what is missing: no preinstalled package changes, so no restart
  replaced = colab_install.replaced_packages({"flax": "0.12.8", "optax": "0.2.8"}, installed)
  assert replaced == [] and colab_install.restart_note(replaced) is None


def test_a_too_old_jax_is_replaced_and_the_cell_asks_for_a_restart(requires_dist):
  installed = {"jax": "0.9.2", "jaxlib": "0.9.2", "libtpu": "0.0.40", **OTHERS}
  keep, why = colab_install.stack_to_keep(requires_dist, ["tpu"], installed, JAX_0_10_2_REQUIRES)
  assert keep == {} and why.startswith("preinstalled jax 0.9.2 is outside ")
  replaced = colab_install.replaced_packages(
    {"jax": "0.10.2", "jaxlib": "0.10.2", "libtpu": "0.0.42.1", "flax": "0.12.8"}, installed
  )
  assert replaced == ["jax 0.9.2 → 0.10.2", "jaxlib 0.9.2 → 0.10.2", "libtpu 0.0.40 → 0.0.42.1"]
  assert colab_install.restart_note(replaced).startswith(
    "Replaced preinstalled packages (jax 0.9.2 → 0.10.2, jaxlib 0.9.2 → 0.10.2, libtpu 0.0.40 → 0.0.42.1): "
    "restart the session"
  )


def test_the_stack_is_kept_whole_or_not_at_all(requires_dist):
  """libtpu is part of the stack only on a TPU runtime, as installed jax's tpu extra pins it; the CUDA plugin only
  on a GPU runtime; a jaxlib that jax's own extra rejects keeps nothing."""
  stale_libtpu = {"jax": "0.10.2", "jaxlib": "0.10.2", "libtpu": "0.0.40", **OTHERS}
  keep, why = colab_install.stack_to_keep(requires_dist, ["tpu"], stale_libtpu, JAX_0_10_2_REQUIRES)
  assert keep == {} and why == "preinstalled libtpu 0.0.40 is outside ==0.0.42.*"
  keep, _ = colab_install.stack_to_keep(requires_dist, [], stale_libtpu, JAX_0_10_2_REQUIRES)
  assert keep == {"jax": "0.10.2", "jaxlib": "0.10.2"}
  gpu = {"jax": "0.10.2", "jaxlib": "0.10.2", "jax-cuda12-plugin": "0.10.2"}
  keep, _ = colab_install.stack_to_keep(requires_dist, ["gpu"], gpu, JAX_0_10_2_REQUIRES)
  assert keep == {"jax": "0.10.2", "jaxlib": "0.10.2", "jax-cuda12-plugin": "0.10.2"}
  keep, why = colab_install.stack_to_keep(
    requires_dist, ["gpu"], {**gpu, "jax-cuda12-plugin": "0.10.1"}, JAX_0_10_2_REQUIRES
  )
  assert keep == {} and why.startswith("preinstalled jax-cuda12-plugin 0.10.1 is outside ")
  keep, why = colab_install.stack_to_keep(
    requires_dist, ["gpu"], {"jax": "0.10.2", "jaxlib": "0.10.2"}, JAX_0_10_2_REQUIRES
  )
  assert keep == {} and why == "jax-cuda12-plugin is not preinstalled"
  keep, why = colab_install.stack_to_keep(requires_dist, [], OTHERS, [])
  assert keep == {} and why == "no jax preinstalled"


def test_installed_versions_are_those_python_imports(tmp_path, monkeypatch):
  """A distribution installed twice (a venv over the system's packages) counts at its first place on sys.path."""
  for folder, version in (("first", "2.0"), ("second", "1.0")):
    info = tmp_path / folder / f"Some_Pkg-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: Some_Pkg\nVersion: {version}\n")
  monkeypatch.setattr(sys, "path", [str(tmp_path / "first"), str(tmp_path / "second"), *sys.path])
  assert colab_install.installed_versions()["some-pkg"] == "2.0"
