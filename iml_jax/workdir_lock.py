"""One run per workdir: `WORKDIR/LOCK` names the run holding it (host, pid, start time) while it runs.

A second run on a busy workdir stops at once with one line naming the holder. A lock left by a run that was
killed is taken over: on the same host when its process is gone (pid and the process's start time, so a reused
pid does not count), from another host (a relaunched TPU VM, a bucket workdir) when its holder stopped refreshing
it for `STALE_AFTER_S`. In a multi-process run process 0 holds the lock for all and tells the others the outcome.
"""

import contextlib
import json
import os
import socket
import threading
import time

from iml_jax import io_utils
from iml_jax.errors import IMLError

LOCK_FILE = "LOCK"
REFRESH_EVERY_S = 60.0
STALE_AFTER_S = 600.0


def _process_start(pid: int) -> str | None:
  """The kernel's start time of process `pid` (Linux), which tells a live holder from a reused pid."""
  try:
    with open(f"/proc/{pid}/stat") as stat:
      return stat.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int, start: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # someone else's live process
  return start is None or _process_start(pid) in (None, start)


def _stale(holder: dict, now: float) -> bool:
  if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
    return not _alive(holder["pid"], holder.get("pid_start"))
  return now - float(holder.get("refreshed", 0)) > STALE_AFTER_S


def _describe(holder: dict, path: str) -> str:
  started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(holder.get("started", 0))))
  return (
    f"pid {holder.get('pid')} on host {holder.get('host')} since {started} (lock file {path}; if that run is no "
    "longer running, delete the lock file)"
  )


class _Lock:
  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    now = time.time()
    self.record = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "pid_start": _process_start(os.getpid()),
      "started": now,
      "refreshed": now,
    }
    self._stop = threading.Event()
    self._refresher = threading.Thread(target=self._refresh, daemon=True, name="workdir-lock")

  def _read(self) -> dict | None:
    try:
      holder = io_utils.read_json(self.path)
    except FileNotFoundError:
      return None
    except IMLError:
      return {}  # cut while being written: a holder we cannot name, stale by its (absent) refresh time
    return holder if isinstance(holder, dict) else {}

  def _write(self) -> None:
    io_utils.atomic_write_text(self.path, json.dumps(self.record))

  def acquire(self) -> None:
    io_utils.makedirs(os.path.dirname(self.path))
    if not io_utils.is_remote(self.path):
      try:  # exclusive creation: of two runs starting together, one wins here
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(fd, "w") as handle:
          handle.write(json.dumps(self.record))
        self._refresher.start()
        return
      except FileExistsError:
        pass
    holder = self._read()
    if holder is not None and not _stale(holder, time.time()):
      raise IMLError(f"workdir {os.path.dirname(self.path)} is in use by another run: {_describe(holder, self.path)}")
    self._write()
    time.sleep(0.05)
    if self._read() != self.record:  # another run took over the same stale lock at the same moment
      raise IMLError(
        f"workdir {os.path.dirname(self.path)} is in use by another run: {_describe(self._read() or {}, self.path)}"
      )
    self._refresher.start()

  def _refresh(self) -> None:
    while not self._stop.wait(REFRESH_EVERY_S):
      self.record["refreshed"] = time.time()
      with contextlib.suppress(OSError):
        self._write()

  def release(self) -> None:
    self._stop.set()
    if self._refresher.is_alive():
      self._refresher.join()
    with contextlib.suppress(OSError, IMLError):
      if self._read() == self.record:
        io_utils.remove(self.path)


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds `workdir`'s lock for the block; IMLError naming the holder when another run holds it."""
  import jax

  lock = _Lock(workdir)
  error = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except IMLError as err:
      error = err
  if jax.process_count() > 1:
    import numpy as np
    from jax.experimental import multihost_utils

    if not multihost_utils.broadcast_one_to_all(np.int32(error is None)):
      raise error or IMLError(f"workdir {workdir} is in use by another run (see process 0's message)")
  if error:
    raise error
  try:
    yield
  finally:
    if jax.process_index() == 0:
      lock.release()
