"""One process of the two-process test (tests/test_distributed.py): 3 sharded train steps and a greedy
evaluation over a mesh that spans both processes; process 0 writes losses, parameters and generations."""

import os
import sys

import xla_flags

os.environ["XLA_FLAGS"] = xla_flags.for_tests(devices=2)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

import test_train  # noqa: E402
from iml_jax import evaluate, sharding  # noqa: E402


def main(process_id: int, port: int, out: str) -> None:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id, local_device_ids=[0, 1]
  )
  assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
  mesh = sharding.make_mesh((2, 2, 1))  # data across processes, fsdp within each
  model, state, step, layout = test_train._setup(
    mesh, rules="fsdp", opt=test_train.blocks.optimizer(name="sgd", lr=0.5)
  )
  losses = []
  for i in range(3):
    batch = {k: sharding.put_global_batch(v, layout[k]) for k, v in test_train._batch(i).items()}
    state, loss = step(state, batch)
    losses.append(float(loss))
  params = multihost_utils.process_allgather(state.params, tiled=True)
  prompts = test_train._batch(7)["tokens"][:6, :5]
  generated = evaluate.generate(model, state.params, prompts, 4, 3, 0, mesh, sharding.rules_for("fsdp"))
  if jax.process_index() == 0:
    flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(params)}
    np.savez(out, losses=np.array(losses), generated=generated, **flat)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
