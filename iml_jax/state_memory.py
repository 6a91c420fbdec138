"""Does a stage's train state fit? Its parameters, their gradients and the optimizer state, per device, against
the device's memory: checked before the state is allocated, so a model far too large for the machine is one line
naming the fields to change, not an out-of-memory traceback. Activations are not counted: a state that fits can
still run out of memory at a large batch. So does a step's batch, on the host, before any batch is built."""

import math
import os

import jax

from iml_jax.errors import IMLError


def state_bytes_per_device(abstract) -> int:
  """Bytes of one device's shards of a `train.TrainState` of abstract arrays, plus its gradients (shaped as the
  parameters)."""
  leaves = jax.tree.leaves((abstract.params, abstract.params, abstract.opt_state, abstract.step))
  return sum(math.prod(leaf.sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize for leaf in leaves)


def device_memory_bytes(device) -> int:
  """An accelerator's memory limit; a CPU device gets the machine's memory shared by its local devices."""
  stats = device.memory_stats()
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  return host_memory_bytes() // jax.local_device_count()


def host_memory_bytes() -> int:
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(abstract, stage_name: str) -> None:
  device = jax.local_devices()[0]
  needed, available = state_bytes_per_device(abstract), device_memory_bytes(device)
  if needed > available:
    raise IMLError(
      f"stage {stage_name}: parameters, gradients and optimizer state need {needed / 2**30:,.1f} GiB "
      f"per device, more than the {available / 2**30:,.1f} GiB of one {device.platform} device; make the "
      "model smaller (model.d_model, model.n_layers, model.d_mlp, model.vocab_multiple) or shard it over "
      "more devices (mesh.shape, mesh.rules = 'fsdp')"
    )


def check_batch_fits(needed: int, stage_name: str, batch_size: int) -> None:
  """`needed`: the bytes of one step's batch on the host (batching.batch_bytes)."""
  available = host_memory_bytes()
  if needed > available:
    raise IMLError(
      f"config field stages.{stage_name}.batch_size = {batch_size}: one step's batch needs {needed / 2**30:,.1f} "
      f"GiB of host memory, more than the machine's {available / 2**30:,.1f} GiB; lower it"
    )
