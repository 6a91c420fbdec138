"""Keep freed host memory for reuse, so XLA:CPU's per-step buffers stop costing a page fault per 4 KiB.

XLA:CPU allocates each execution's temporary buffer (135 MiB for `benchmarks/train_throughput.py`'s step) with
`posix_memalign` on the thread that runs it. glibc serves a request that large from `mmap` (in a thread's arena
always) and returns it with `munmap` when the step ends, so the next step touches fresh pages: 35,000 minor page
faults per step there, about 15% of its time on one core. With one arena, no `mmap` and no trimming, freed memory
stays in the process for the next step: about 7,000 faults per step there. glibc's aligned allocation does not
always refit the freed hole, so the heap grows by a buffer now and then (Pythia-70M's study step: once in 12 steps)
and then stays. Trimming must be off, not merely above 2 GiB: with the threshold at 2**31 - 1 that step with a
1.4 GiB temporary buffer gave its heap top back whenever it passed 2 GiB and faulted it in again. Results do not
change (only where buffers live); memory that a run has freed is not given back to the system until it exits.

It must run before JAX or torch start their thread pools (a thread keeps the arena it first allocated from):
first thing in a process that computes on CPU. `reuse` and `hugepages` need glibc (Linux); elsewhere they raise.

`hugepages` keeps glibc's malloc but has it ask for transparent huge pages for what it maps (glibc >= 2.35, the
`glibc.malloc.hugetlb=1` tunable, set in `GLIBC_TUNABLES` before the process starts, so the process executes itself
again with it): the buffer is still mapped afresh each step, but 2 MiB at a time, 512 times fewer faults (at
`benchmarks/train_throughput.py`'s shape about 550 per step). It needs the kernel's transparent huge pages set to
`always` or `madvise` (/sys/kernel/mm/transparent_hugepage/enabled).

The benchmarks' `--host_malloc` (default `glibc`, malloc as it is) applies it; `iml_jax` itself never changes the
allocator. `auto` is `hugepages` where the machine allows it, unless the process was started with an allocator
or huge-page setting of its own (a malloc in `LD_PRELOAD`, `glibc.malloc.hugetlb` in `GLIBC_TUNABLES`), which it
keeps; elsewhere (no glibc >= 2.35, huge pages off, not Linux) malloc stays as it is.

`tcmalloc` swaps the allocator instead: the process executes itself again with gperftools' tcmalloc preloaded
(`LD_PRELOAD`). It keeps freed spans for reuse and refits them: a loop of `benchmarks/train_throughput.py`'s step
alone faults 0–150 pages per step from the third step on, where `reuse` still grows the heap by a buffer (35,000
faults) in 2 of 10 steps.
"""

import ctypes
import ctypes.util
import os
import sys

from absl import flags

from iml_jax.errors import IMLError

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = -1  # mallopt(3): -1 disables trimming

# `apply_the_default`, glibc's defaults, `reuse_freed_memory`, `run_with_huge_pages`, `run_under_tcmalloc`
CHOICES = ("auto", "glibc", "reuse", "hugepages", "tcmalloc")
_TCMALLOC_LIBRARIES = ("tcmalloc_minimal", "tcmalloc")  # gperftools' two builds, either will do
_EXECUTED_AGAIN_FOR = "IML_JAX_HOST_MALLOC"  # set in the re-executed process: never execute a third time
_HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
_FIRST_GLIBC_WITH_HUGETLB = (2, 35)
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"

HOST_MALLOC = flags.DEFINE_enum(
  "host_malloc",
  "glibc",
  list(CHOICES),
  "Host memory on CPU, of both sides (opt-in; results do not change). XLA:CPU allocates each step's temporaries "
  "afresh, which glibc maps and unmaps every step. 'glibc': glibc's malloc as it is; 'reuse': glibc keeps freed "
  "memory; 'hugepages': the command runs again with glibc mapping transparent huge pages (glibc >= 2.35); "
  "'tcmalloc': the command runs again with gperftools' tcmalloc preloaded (apt install libtcmalloc-minimal4); "
  "'auto': 'hugepages' where this machine allows it and the environment chose no allocator or huge-page setting, "
  "else 'glibc'.",
)


def _glibc(choice: str) -> ctypes.CDLL:
  libc_name = ctypes.util.find_library("c")
  libc = ctypes.CDLL(libc_name) if libc_name else None
  if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
    raise IMLError(f"host malloc {choice!r} needs glibc (Linux); this process's C library is {libc_name!r}")
  return libc


def reuse_freed_memory() -> None:
  """One malloc arena for every thread, never `mmap`, never trim: freed buffers are reused, not unmapped."""
  libc = _glibc("reuse")
  for parameter, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM)):
    if libc.mallopt(parameter, value) != 1:
      raise IMLError(f"glibc's mallopt({parameter}, {value}) failed")


def tcmalloc_loaded() -> bool:
  """Whether this process's allocator is tcmalloc (mapped into it, as `LD_PRELOAD` maps it)."""
  try:
    with open("/proc/self/maps") as maps:
      return "/libtcmalloc" in maps.read()
  except OSError:
    return False


def _refuse_a_second_attempt(choice: str, variable: str) -> None:
  """In a process already executed again for `choice` (its `variable` set), `choice` did not apply: say so."""
  if os.environ.get(_EXECUTED_AGAIN_FOR) == choice:
    raise IMLError(f"host malloc {choice!r}: {variable}={os.environ.get(variable)!r} did not take effect")


def _execute_again(choice: str, environment: dict) -> None:
  """Executes this process's command line again with `environment` added (does not return); output is flushed
  first."""
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, sys.orig_argv, {**os.environ, **environment, _EXECUTED_AGAIN_FOR: choice})


def _huge_page_tunables() -> list[str]:
  """The `glibc.malloc.hugetlb` settings this process was started with, in order (glibc applies the last)."""
  return [t for t in os.environ.get("GLIBC_TUNABLES", "").split(":") if t.startswith("glibc.malloc.hugetlb=")]


def huge_pages_applied() -> bool:
  """Whether glibc's malloc of this process was started with the huge-page tunable."""
  return _huge_page_tunables()[-1:] == [_HUGE_PAGES_TUNABLE]


def why_huge_pages_cannot_apply() -> str | None:
  """What stops `hugepages` on this machine (glibc too old, transparent huge pages off), or None."""
  version = _glibc("hugepages").gnu_get_libc_version
  version.restype = ctypes.c_char_p
  release = version().decode()
  if tuple(int(part) for part in release.split(".")[:2]) < _FIRST_GLIBC_WITH_HUGETLB:
    return f"needs glibc >= 2.35 (its glibc.malloc.hugetlb tunable); this is {release}"
  try:
    with open(_THP_SETTING) as setting:
      mode = setting.read().strip()
  except OSError:
    mode = "nothing (no such file)"
  if "[always]" not in mode and "[madvise]" not in mode:
    return f"needs transparent huge pages set to always or madvise in {_THP_SETTING}; it reads {mode!r}"
  return None


def run_with_huge_pages() -> None:
  """Returns at once when glibc's malloc was started asking for transparent huge pages; otherwise executes this
  process's command line again with `glibc.malloc.hugetlb=1` added to `GLIBC_TUNABLES` (the new process's call
  returns)."""
  if huge_pages_applied():
    return
  _refuse_a_second_attempt("hugepages", "GLIBC_TUNABLES")
  reason = why_huge_pages_cannot_apply()
  if reason:
    raise IMLError(f"host malloc 'hugepages' {reason}")
  tunables = ":".join(filter(None, (os.environ.get("GLIBC_TUNABLES"), _HUGE_PAGES_TUNABLE)))
  _execute_again("hugepages", {"GLIBC_TUNABLES": tunables})


def run_under_tcmalloc() -> None:
  """Returns at once when tcmalloc is this process's allocator; otherwise executes this process's command line
  again with tcmalloc preloaded (this call does not return, the new process's does)."""
  if tcmalloc_loaded():
    return
  _refuse_a_second_attempt("tcmalloc", "LD_PRELOAD")
  library = next(filter(None, map(ctypes.util.find_library, _TCMALLOC_LIBRARIES)), None)
  if library is None:
    raise IMLError(
      "host malloc 'tcmalloc' needs gperftools' libtcmalloc_minimal or libtcmalloc, and neither is installed "
      "(Debian/Ubuntu: apt install libtcmalloc-minimal4)"
    )
  _execute_again("tcmalloc", {"LD_PRELOAD": " ".join(filter(None, (library, os.environ.get("LD_PRELOAD"))))})


def chosen_in_the_environment() -> str | None:
  """The allocator setting this process was started with (a preloaded malloc, a huge-page tunable), or None."""
  preloaded = [library for library in os.environ.get("LD_PRELOAD", "").split() if "malloc" in library]
  if preloaded:
    return f"LD_PRELOAD={' '.join(preloaded)}"
  tunables = _huge_page_tunables()
  return f"GLIBC_TUNABLES={tunables[-1]}" if tunables else None


def apply_the_default() -> None:
  """'auto': `run_with_huge_pages` unless the environment chose an allocator or huge-page setting already, or this
  machine cannot (no glibc >= 2.35, transparent huge pages off): then malloc stays as it is."""
  if chosen_in_the_environment():
    return
  try:
    cannot = why_huge_pages_cannot_apply()
  except IMLError as not_glibc:
    cannot = str(not_glibc)
  if not cannot:
    run_with_huge_pages()


def in_effect(choice: str) -> str:
  """`choice` as this process runs it: 'auto' with what it resolved to."""
  if choice != "auto":
    return choice
  resolved = os.environ.get(_EXECUTED_AGAIN_FOR) or chosen_in_the_environment() or "glibc"
  return f"auto ({resolved})"


def apply(choice: str) -> None:
  """`choice` from CHOICES: "glibc" leaves malloc as it is."""
  if choice not in CHOICES:
    raise IMLError(f"host malloc {choice!r}: expected one of {CHOICES}")
  if choice == "auto":
    apply_the_default()
  elif choice == "reuse":
    reuse_freed_memory()
  elif choice == "hugepages":
    run_with_huge_pages()
  elif choice == "tcmalloc":
    run_under_tcmalloc()
