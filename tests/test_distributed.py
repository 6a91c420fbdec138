"""Two local processes (jax.distributed on 127.0.0.1, gloo CPU collectives) train like one process."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import test_train
import xla_flags
from iml_jax import evaluate, sharding
from test_experiment import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
  out, port = str(tmp_path / "two_processes.npz"), _free_port()
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE)])}
  workers = [
    subprocess.Popen(
      [sys.executable, os.path.join(HERE, "distributed_worker.py"), str(i), str(port), out],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  logs = [w.communicate(timeout=240)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], "\n".join(logs)
  two = np.load(out)

  mesh = test_train._one_device_mesh()
  model, state, step, layout = test_train._setup(
    mesh, rules="fsdp", opt=test_train.blocks.optimizer(name="sgd", lr=0.5)
  )
  losses = []
  for i in range(3):
    state, loss = step(state, {k: sharding.put_global_batch(v, layout[k]) for k, v in test_train._batch(i).items()})
    losses.append(float(loss))
  np.testing.assert_allclose(two["losses"], losses, rtol=1e-5)
  for path, value in jax.tree_util.tree_leaves_with_path(jax.device_get(state.params)):
    np.testing.assert_allclose(two[jax.tree_util.keystr(path)], value, atol=1e-5)
  prompts = test_train._batch(7)["tokens"][:6, :5]
  np.testing.assert_array_equal(
    two["generated"], evaluate.generate(model, state.params, prompts, 4, 3, 0, mesh, sharding.rules_for("fsdp"))
  )


# slow (two tiny runs, one of them as two processes, on 2 cores): run with `-m slow`
@pytest.mark.slow
def test_two_processes_write_one_bucket_workdir_like_one_local_process(gcs, tmp_path):
  """A pod's workdir in a bucket (tests/fake_gcs.py): both processes write their checkpoint shards into it,
  process 0 everything else, and the results are those of one local process on as many devices."""
  command = [
    sys.executable,
    "-m",
    "iml_jax.main",
    "--config=configs/default.py:tiny",
    "--config.progress_bar=False",
    "--config.n_seeds=1",
  ]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags.for_tests(devices=2)}
  port = _free_port()
  workers = [
    subprocess.Popen(
      command + ["--workdir=gs://bucket/pod", "--distributed"],
      cwd=ROOT,
      text=True,
      env={**env, "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)},
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
    )
    for i in range(2)
  ]
  logs = [w.communicate(timeout=300)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], "\n".join(log[-3000:] for log in logs)
  single = subprocess.run(
    command + [f"--workdir={tmp_path}"],
    cwd=ROOT,
    env={**env, "XLA_FLAGS": xla_flags.for_tests(devices=4)},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert single.returncode == 0, single.stderr[-3000:]
  for name in ("results.csv", "summary.json", "seed_0/s2seed_0/stage2/predictions.jsonl"):
    assert gcs.read(f"gs://bucket/pod/{name}") == (tmp_path / name).read_bytes(), name
  shards = {n.split("/")[6] for n in gcs.names(prefix="pod/seed_0/stage1/checkpoints/") if "/params/ocdbt." in n}
  assert shards == {"ocdbt.process_0", "ocdbt.process_1"}
