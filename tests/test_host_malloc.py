"""benchmarks/host_malloc.py: with freed memory reused, a program's large buffers stop page-faulting on every call."""

import ctypes.util
import os
import re
import subprocess
import sys

import pytest

from iml_jax.errors import IMLError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import host_malloc  # noqa: E402

# A jitted program with a 64 MiB intermediate (the sines, materialised for the product): XLA:CPU allocates it
# in the execution's temporary buffer and frees it when the call ends.
_FAULTS_PER_CALL = """
import resource, sys
sys.path.insert(0, "benchmarks")
import host_malloc
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


def huge_pages_unavailable() -> str | None:
  """Why `hugepages` cannot apply on this machine, or None."""
  try:
    return host_malloc.why_huge_pages_cannot_apply()
  except IMLError as not_glibc:
    return str(not_glibc)


@pytest.mark.skipif(bool(huge_pages_unavailable()), reason=str(huge_pages_unavailable()))
def test_huge_pages_cut_the_page_faults_of_every_call():
  assert _faults_per_call("hugepages") < 0.05 * _PAGES  # the buffer is still mapped each call, 2 MiB per fault


def test_huge_pages_keep_the_users_tunables_and_are_asked_for_last(monkeypatch):
  executed = {}
  monkeypatch.setattr(host_malloc, "why_huge_pages_cannot_apply", lambda: None)
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2")
  monkeypatch.delenv("IML_JAX_HOST_MALLOC", raising=False)
  monkeypatch.setattr(os, "execve", lambda program, argv, env: executed.update(env))
  host_malloc.apply("hugepages")
  assert executed["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  assert executed["IML_JAX_HOST_MALLOC"] == "hugepages"
  monkeypatch.setenv("GLIBC_TUNABLES", executed["GLIBC_TUNABLES"])
  assert host_malloc.huge_pages_applied()
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1:glibc.malloc.hugetlb=0")  # the last one counts
  assert not host_malloc.huge_pages_applied()


def test_huge_pages_the_kernel_does_not_give_are_a_clear_error(monkeypatch, tmp_path):
  setting = tmp_path / "enabled"
  setting.write_text("always madvise [never]\n")
  monkeypatch.setattr(host_malloc, "_THP_SETTING", str(setting))
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("executed again without huge pages"))
  with pytest.raises(
    IMLError,
    match=r"'hugepages' needs transparent huge pages set to always or madvise in .*"
    r"enabled; it reads 'always madvise \[never\]'",
  ):
    host_malloc.apply("hugepages")


def test_a_glibc_without_the_huge_page_tunable_is_a_clear_error(monkeypatch):
  monkeypatch.setattr(host_malloc, "_FIRST_GLIBC_WITH_HUGETLB", (9, 99))
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("executed again with a tunable glibc ignores"))
  with pytest.raises(IMLError, match=r"'hugepages' needs glibc >= 2.35 \(its glibc.malloc.hugetlb tunable\); this is "):
    host_malloc.apply("hugepages")


def test_huge_pages_that_did_not_apply_are_not_retried(monkeypatch):
  monkeypatch.setenv("IML_JAX_HOST_MALLOC", "hugepages")
  monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
  monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("executed a third time"))
  with pytest.raises(IMLError, match=r"'hugepages': GLIBC_TUNABLES='glibc.malloc.arena_max=2' did not take effect"):
    host_malloc.apply("hugepages")


TCMALLOC_INSTALLED = any(map(ctypes.util.find_library, ("tcmalloc_minimal", "tcmalloc")))


@pytest.mark.skipif(not TCMALLOC_INSTALLED, reason="gperftools' tcmalloc is not installed")
def test_tcmalloc_runs_the_program_again_under_it_and_stops_the_page_faults():
  assert _faults_per_call("tcmalloc") < 0.2 * _PAGES  # measured: 5% (it gives a few spans back each call)
  probe = (
    "import sys; sys.path.insert(0, 'benchmarks'); import host_malloc; print(host_malloc.tcmalloc_loaded()); "
    "sys.stdout.flush()"
  )
  done = subprocess.run(
    [sys.executable, "-c", probe + "; host_malloc.apply('tcmalloc'); print(host_malloc.tcmalloc_loaded())"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ["False", "True", "True"]  # the first process printed once, then its successor


def test_tcmalloc_not_installed_is_a_clear_error(monkeypatch):
  monkeypatch.setattr(host_malloc, "tcmalloc_loaded", lambda: False)
  monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
  monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("executed again without tcmalloc"))
  with pytest.raises(IMLError, match=r"needs gperftools' libtcmalloc_minimal or libtcmalloc.*libtcmalloc-minimal4"):
    host_malloc.apply("tcmalloc")


def test_a_preload_that_did_not_load_is_not_retried(monkeypatch):
  monkeypatch.setattr(host_malloc, "tcmalloc_loaded", lambda: False)
  monkeypatch.setenv("IML_JAX_HOST_MALLOC", "tcmalloc")
  monkeypatch.setenv("LD_PRELOAD", "libtcmalloc_minimal.so.4")
  monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("executed a third time"))
  with pytest.raises(
    IMLError, match=r"host malloc 'tcmalloc': LD_PRELOAD='libtcmalloc_minimal.so.4' did not take effect"
  ):
    host_malloc.apply("tcmalloc")


# A block above 2 GiB malloc'd, touched, freed, then again: the second touch faults only if the freed memory
# left the process (glibc trims a heap top above its threshold; an int threshold is at most 2 GiB).
_FAULTS_OF_EACH_TOUCH = """
import ctypes, resource, sys
sys.path.insert(0, "benchmarks")
import host_malloc
host_malloc.apply(sys.argv[1])
libc = ctypes.CDLL(None)
libc.malloc.argtypes, libc.malloc.restype, libc.free.argtypes = [ctypes.c_size_t], ctypes.c_void_p, [ctypes.c_void_p]
size = 2**31 + 2**24
for _ in range(2):
  block = libc.malloc(size)
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  ctypes.memset(block, 1, size)
  print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  libc.free(block)
"""
_BLOCK_PAGES = (2**31 + 2**24) // os.sysconf("SC_PAGE_SIZE")


def _faults_of_each_touch(choice: str, env: dict | None = None) -> list[int]:
  done = subprocess.run(
    [sys.executable, "-c", _FAULTS_OF_EACH_TOUCH, choice],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, **(env or {})},
  )
  assert done.returncode == 0, done.stderr[-2000:]
  return [int(line) for line in done.stdout.split()]


def _readme_tunables() -> str:
  with open(os.path.join(ROOT, "docs", "development.md")) as f:
    return re.search(r"GLIBC_TUNABLES=(\S+)", f.read()).group(1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_memory_freed_above_two_gib_stays_for_reuse():
  assert _faults_of_each_touch("glibc")[1] > 0.9 * _BLOCK_PAGES  # unmapped when freed
  assert _faults_of_each_touch("reuse")[1] < 0.01 * _BLOCK_PAGES
  assert _faults_of_each_touch("glibc", {"GLIBC_TUNABLES": _readme_tunables()})[1] < 0.01 * _BLOCK_PAGES


def test_an_unknown_choice_is_refused():
  with pytest.raises(
    IMLError, match=r"host malloc 'jemalloc': expected one of \('auto', 'glibc', 'reuse', 'hugepages', 'tcmalloc'\)"
  ):
    host_malloc.apply("jemalloc")


@pytest.mark.parametrize(
  "environment, can, executes",
  [
    ({}, True, True),
    ({}, False, False),  # glibc too old, huge pages off, or not glibc
    ({"LD_PRELOAD": "libfoo.so /usr/lib/libjemalloc.so.2"}, True, False),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"}, True, False),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "LD_PRELOAD": "libfoo.so"}, True, True),
  ],
)
def test_auto_asks_for_huge_pages_where_it_can_and_nothing_else_chose(monkeypatch, environment, can, executes):
  for name in ("LD_PRELOAD", "GLIBC_TUNABLES", "IML_JAX_HOST_MALLOC"):
    monkeypatch.delenv(name, raising=False)
  for name, value in environment.items():
    monkeypatch.setenv(name, value)

  def cannot():
    if not can:
      raise IMLError("host malloc 'hugepages' needs glibc (Linux)")

  executed = []
  monkeypatch.setattr(host_malloc, "why_huge_pages_cannot_apply", cannot)
  monkeypatch.setattr(os, "execve", lambda program, argv, env: executed.append(env["GLIBC_TUNABLES"]))
  host_malloc.apply("auto")
  assert executed == (
    [f"{environment.get('GLIBC_TUNABLES', '')}:glibc.malloc.hugetlb=1".lstrip(":")] if executes else []
  )


def test_what_auto_resolved_to_is_said(monkeypatch):
  for name in ("LD_PRELOAD", "GLIBC_TUNABLES", "IML_JAX_HOST_MALLOC"):
    monkeypatch.delenv(name, raising=False)
  assert host_malloc.in_effect("auto") == "auto (glibc)" and host_malloc.in_effect("reuse") == "reuse"
  monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")
  assert host_malloc.in_effect("auto") == "auto (LD_PRELOAD=/usr/lib/libjemalloc.so.2)"
  monkeypatch.setenv("IML_JAX_HOST_MALLOC", "hugepages")
  assert host_malloc.in_effect("auto") == "auto (hugepages)"
