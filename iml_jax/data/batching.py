"""Step-indexed data order: the batch of global step t is a pure function of (seed, seed_stage2, stage, t).

Resuming needs no iterator state: a restarted run recomputes the same permutation. The last batch
of an epoch is filled up with weight-0 rows, so every step has the same shape and every example
counts exactly once per epoch (as a smaller last batch would).
"""
import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  return -(-num_examples // batch_size)


def epoch_permutation(order_key: tuple[int, ...], epoch: int, num_examples: int) -> np.ndarray:
  """`order_key` names the run and stage, e.g. (seed, seed_stage2, stage index)."""
  return np.random.default_rng([*order_key, epoch, 11]).permutation(num_examples)


def batch_rows(permutation: np.ndarray, step_in_epoch: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(row indices, weights) of one batch; rows past the end repeat row 0 with weight 0."""
  rows = permutation[step_in_epoch * batch_size:(step_in_epoch + 1) * batch_size]
  weights = np.ones(batch_size, dtype=np.float32)
  if len(rows) < batch_size:
    weights[len(rows):] = 0.0
    rows = np.concatenate([rows, np.zeros(batch_size - len(rows), dtype=rows.dtype)])
  return rows, weights
