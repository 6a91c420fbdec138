"""Step-indexed data order: the batch of global step t is a pure function of (seed, seed_stage2, stage, t).

Resuming needs no iterator state: a restarted run recomputes the same permutation. The last batch
of an epoch is filled up with weight-0 rows, so every step has the same shape.

Steps per epoch are counted as the study's HF Trainer counts them (docs/study.md §7.3): the epoch is cut
into micro-batches of batch_size / grad_accum (the last one partial), and every grad_accum of them make
one optimizer step; micro-batches left over at the end of an epoch make no step. So 16,000 examples at
128 x 2 give 62 steps (the last 128 examples of that epoch's order are not trained in that epoch; the
order changes every epoch), and 960 give 4 (the last step partial). Without accumulation every example
counts exactly once per epoch.
"""
import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int, grad_accum: int = 1) -> int:
  micro_batches = -(-num_examples // (batch_size // grad_accum))
  return max(micro_batches // grad_accum, 1)


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
