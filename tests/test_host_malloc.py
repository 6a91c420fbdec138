"""host_malloc: with freed memory reused, a program's large buffers stop page-faulting on every call."""

import os
import subprocess
import sys

import pytest

from iml_jax import host_malloc
from iml_jax.errors import IMLError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A jitted program with a 64 MiB intermediate (the sines, materialised for the product): XLA:CPU allocates it
# in the execution's temporary buffer and frees it when the call ends.
_FAULTS_PER_CALL = """
import resource, sys
from iml_jax import host_malloc
host_malloc.apply(sys.argv[1])
import jax, jax.numpy as jnp
project = jax.jit(lambda x, w: jnp.sum(jnp.sin(x) @ w))
x, w = jnp.ones((16384, 1024), jnp.float32), jnp.ones((1024, 8), jnp.float32)
for _ in range(5):
  project(x, w).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
  project(x, w).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""
_PAGES = 16384 * 1024 * 4 // os.sysconf("SC_PAGE_SIZE")


def _faults_per_call(choice: str) -> float:
  done = subprocess.run(
    [sys.executable, "-c", _FAULTS_PER_CALL, choice], cwd=ROOT, capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-2000:]
  return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reused_memory_stops_the_page_faults_of_every_call():
  assert _faults_per_call("glibc") > 0.9 * _PAGES  # glibc maps the buffer afresh each call
  assert _faults_per_call("reuse") < 0.5 * _PAGES  # the buffer is reused on most calls


def test_an_unknown_choice_is_refused():
  with pytest.raises(IMLError, match=r"host malloc 'tcmalloc': expected one of \('glibc', 'reuse'\)"):
    host_malloc.apply("tcmalloc")
