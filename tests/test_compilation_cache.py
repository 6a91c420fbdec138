"""The persistent compilation cache: programs written once, loaded by the next process, same results."""

import os
import subprocess
import sys

import pytest

from iml_jax import compilation_cache
from iml_jax.errors import IMLError

_PROGRAM = """
import sys
import jax, jax.numpy as jnp
from iml_jax import compilation_cache
compilation_cache.enable(sys.argv[1])
x = jnp.linspace(0.0, 1.0, 64, dtype=jnp.float32)
print(jax.jit(lambda v: jnp.tanh(v) @ jnp.exp(v))(x).item().hex())
"""


def _run(directory: str) -> str:
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  return subprocess.run(
    [sys.executable, "-c", _PROGRAM, directory], env=env, check=True, capture_output=True, text=True
  ).stdout.strip()


def _entries(directory) -> list[str]:
  return sorted(name for name in os.listdir(directory) if name.endswith("-cache"))


def test_a_program_compiled_once_is_loaded_by_the_next_process_with_the_same_result(tmp_path):
  cache = tmp_path / "xla"
  first = _run(str(cache))
  written = _entries(cache)
  assert written  # the quick program is cached too (no minimum compile time)
  mtimes = {name: os.stat(cache / name).st_mtime_ns for name in written}
  assert _run(str(cache)) == first
  assert _entries(cache) == written  # loaded, not compiled and written again
  assert {name: os.stat(cache / name).st_mtime_ns for name in written} == mtimes
  assert _run("") == first  # the cache off: compiled afresh, the same executable


def test_an_unsupported_cache_location_is_one_line():
  with pytest.raises(IMLError, match="s3://"):
    compilation_cache.enable("s3://bucket/xla")
