"""One run per workdir: a busy workdir is refused naming its holder; locks of dead runs are taken over."""

import json
import os
import socket
import subprocess
import time

import pytest

from iml_jax import io_utils, workdir_lock
from iml_jax.errors import IMLError
from iml_jax.workdir_lock import LOCK_FILE, workdir_lock as lock


def _lock_path(root):
  return os.path.join(root, LOCK_FILE)


def _write_holder(root, **fields):
  io_utils.makedirs(root)
  holder = {
    "host": socket.gethostname(),
    "pid": os.getpid(),
    "pid_start": workdir_lock._process_start(os.getpid()),
    "started": time.time(),
    "refreshed": time.time(),
    **fields,
  }
  io_utils.atomic_write_text(_lock_path(root), json.dumps(holder))
  return holder


def test_a_busy_workdir_is_refused_naming_its_holder_and_released_after(storage_root):
  with lock(storage_root):
    holder = io_utils.read_json(_lock_path(storage_root))
    assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
    with pytest.raises(IMLError) as refused:
      with lock(storage_root):
        pass
    message = str(refused.value)
    holder_text = f"pid {os.getpid()} on host {socket.gethostname()}"
    assert f"workdir {storage_root} is in use by another run: {holder_text}" in message
    assert _lock_path(storage_root) in message and "\n" not in message
    assert io_utils.read_json(_lock_path(storage_root)) == holder  # the refused run took nothing
  assert not io_utils.exists(_lock_path(storage_root))


def test_the_lock_is_released_when_the_run_fails(tmp_path):
  with pytest.raises(ValueError):
    with lock(str(tmp_path)):
      raise ValueError("a failing run")
  assert not os.path.exists(_lock_path(tmp_path))


def test_the_lock_of_a_killed_process_on_this_host_is_taken_over(tmp_path):
  dead = subprocess.Popen(["true"])
  dead.wait()
  _write_holder(str(tmp_path), pid=dead.pid, pid_start="1")
  with lock(str(tmp_path)):
    assert io_utils.read_json(_lock_path(tmp_path))["pid"] == os.getpid()


def test_a_reused_pid_does_not_hold_the_lock(tmp_path):
  """The holder's pid now belongs to another process (this one): its start time differs, so the lock is stale."""
  _write_holder(str(tmp_path), pid_start="0")
  with lock(str(tmp_path)):
    assert io_utils.read_json(_lock_path(tmp_path))["pid_start"] == workdir_lock._process_start(os.getpid())


def test_another_hosts_lock_holds_while_it_is_refreshed(storage_root):
  """A bucket workdir or a relaunched VM: another host's process cannot be checked, its refresh time can."""
  _write_holder(storage_root, host="tpu-vm-that-was-preempted", pid=1)
  with pytest.raises(IMLError, match="pid 1 on host tpu-vm-that-was-preempted since"):
    with lock(storage_root):
      pass
  _write_holder(
    storage_root, host="tpu-vm-that-was-preempted", pid=1, refreshed=time.time() - workdir_lock.STALE_AFTER_S - 1
  )
  with lock(storage_root):
    assert io_utils.read_json(_lock_path(storage_root))["host"] == socket.gethostname()


def test_an_unreadable_lock_is_stale(tmp_path):
  (tmp_path / LOCK_FILE).write_text('{"host": "a-cut-wri')
  with lock(str(tmp_path)):
    assert io_utils.read_json(_lock_path(tmp_path))["pid"] == os.getpid()


def test_the_holder_refreshes_its_lock(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "REFRESH_EVERY_S", 0.05)
  with lock(str(tmp_path)):
    first = io_utils.read_json(_lock_path(tmp_path))["refreshed"]
    deadline = time.time() + 10
    while io_utils.read_json(_lock_path(tmp_path))["refreshed"] == first:
      assert time.time() < deadline
      time.sleep(0.02)
