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
first thing in a process that computes on CPU. Glibc only (Linux); elsewhere it raises.
"""

import ctypes
import ctypes.util

from iml_jax.errors import IMLError

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = -1  # mallopt(3): -1 disables trimming

CHOICES = ("glibc", "reuse")  # glibc's defaults, or `reuse_freed_memory`


def reuse_freed_memory() -> None:
  """One malloc arena for every thread, never `mmap`, never trim: freed buffers are reused, not unmapped."""
  libc_name = ctypes.util.find_library("c")
  libc = ctypes.CDLL(libc_name) if libc_name else None
  if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
    raise IMLError(f"host malloc 'reuse' needs glibc (Linux); this process's C library is {libc_name!r}")
  for parameter, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM)):
    if libc.mallopt(parameter, value) != 1:
      raise IMLError(f"glibc's mallopt({parameter}, {value}) failed")


def apply(choice: str) -> None:
  """`choice` from CHOICES: "glibc" leaves malloc as it is."""
  if choice not in CHOICES:
    raise IMLError(f"host malloc {choice!r}: expected one of {CHOICES}")
  if choice == "reuse":
    reuse_freed_memory()
