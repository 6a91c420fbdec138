"""Two local processes (jax.distributed on 127.0.0.1, gloo CPU collectives) train like one process."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np

import test_train
from iml_jax import evaluate, sharding

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
  out, port = str(tmp_path / "two_processes.npz"), _free_port()
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE)])}
  workers = [subprocess.Popen([sys.executable, os.path.join(HERE, "distributed_worker.py"), str(i), str(port), out],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
  logs = [w.communicate(timeout=240)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], "\n".join(logs)
  two = np.load(out)

  mesh = test_train._one_device_mesh()
  model, state, step, layout = test_train._setup(mesh, rules="fsdp", opt=test_train.cd.optimizer(name="sgd", lr=0.5))
  losses = []
  for i in range(3):
    state, loss = step(state, {k: sharding.put_global_batch(v, layout[k]) for k, v in test_train._batch(i).items()})
    losses.append(float(loss))
  np.testing.assert_allclose(two["losses"], losses, rtol=1e-5)
  for path, value in jax.tree_util.tree_leaves_with_path(jax.device_get(state.params)):
    np.testing.assert_allclose(two[jax.tree_util.keystr(path)], value, atol=1e-5)
  prompts = test_train._batch(7)["tokens"][:6, :5]
  np.testing.assert_array_equal(two["generated"], evaluate.generate(model, state.params, prompts, 4, 3, 0, mesh,
                                                                     sharding.rules_for("fsdp")))
