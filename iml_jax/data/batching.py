"""Step-indexed data order: the batch of global step t is a pure function of (seed, stage, t).

Resuming needs no iterator state: a restarted run recomputes the same permutation. The last batch
of an epoch is filled up with weight-0 rows, so every step has the same shape and every example
counts exactly once per epoch (as a smaller last batch would).
"""
import jax
import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return -(-num_examples // batch_size)


def epoch_permutation(seed: int, stage_index: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, stage_index, epoch, 11]).permutation(num_examples)


def batch_rows(permutation: np.ndarray, step_in_epoch: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(row indices, weights) of one batch; rows past the end repeat row 0 with weight 0."""
  rows = permutation[step_in_epoch * batch_size:(step_in_epoch + 1) * batch_size]
  weights = np.ones(batch_size, dtype=np.float32)
  if len(rows) < batch_size:
    weights[len(rows):] = 0.0
    rows = np.concatenate([rows, np.zeros(batch_size - len(rows), dtype=rows.dtype)])
  return rows, weights


def to_global_array(local_rows: np.ndarray, sharding: jax.sharding.NamedSharding) -> jax.Array:
  """This process's slice of a global batch → one global jax.Array laid out by `sharding`."""
  global_shape = (local_rows.shape[0] * jax.process_count(),) + local_rows.shape[1:]
  return jax.make_array_from_process_local_data(sharding, local_rows, global_shape)


def process_slice(global_rows: np.ndarray) -> np.ndarray:
  """The contiguous part of a global batch this process feeds."""
  per_process = global_rows.shape[0] // jax.process_count()
  start = jax.process_index() * per_process
  return global_rows[start:start + per_process]
