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

from typing import TypedDict

import numpy as np


class Batch(TypedDict, total=False):
  """The host arrays of one training step, each [batch, ...]. `weights` (0 marks a fill-up row) is always there;
  a decoder-only model reads `tokens` and `loss_mask` [batch, length - 1], an encoder–decoder `inputs` and
  `input_mask` [batch, input length] and `targets` and `loss_mask` [batch, target length], an array model
  `inputs` and `targets` and `loss_mask` [batch, outputs] (model_io.py encodes each kind)."""

  weights: np.ndarray
  tokens: np.ndarray
  inputs: np.ndarray
  input_mask: np.ndarray
  targets: np.ndarray
  loss_mask: np.ndarray


def steps_per_epoch(num_examples: int, batch_size: int, grad_accum: int = 1) -> int:
  micro_batches = -(-num_examples // (batch_size // grad_accum))
  return max(micro_batches // grad_accum, 1)


def batch_bytes(example: dict[str, np.ndarray], batch_size: int) -> int:
  """Host bytes of one step's batch, from the arrays of one encoded example (each [1, ...]): its rows, their
  indices and weights. Known before any batch is allocated, so a batch too large for the machine is refused."""
  per_row = sum(array.nbytes // array.shape[0] for array in example.values())
  return batch_size * (per_row + np.dtype(np.intp).itemsize + np.dtype(np.float32).itemsize)


def epoch_permutation(order_key: tuple[int, ...], epoch: int, num_examples: int) -> np.ndarray:
  """`order_key` names the run and stage, e.g. (seed, seed_stage2, stage index)."""
  return np.random.default_rng([*order_key, epoch, 11]).permutation(num_examples)


def batch_rows(permutation: np.ndarray, step_in_epoch: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """(row indices, weights) of one batch; rows past the end repeat row 0 with weight 0."""
  rows = permutation[step_in_epoch * batch_size : (step_in_epoch + 1) * batch_size]
  weights = np.ones(batch_size, dtype=np.float32)
  if len(rows) < batch_size:
    weights[len(rows) :] = 0.0
    rows = np.concatenate([rows, np.zeros(batch_size - len(rows), dtype=rows.dtype)])
  return rows, weights


class StageBatches:
  """The host arrays of every training step of one stage, by step number: each epoch's examples encoded once —
  once for the whole stage when the task does not redraw them — and cut into batches in `epoch_permutation`'s
  order by `batch_rows` (a `weights` array marks the fill-up rows)."""

  def __init__(self, data, encode, order_key: tuple[int, ...], batch_size: int, per_epoch: int):
    self._data, self._encode, self._order_key = data, encode, order_key
    self._batch_size, self._per_epoch = batch_size, per_epoch
    self._epoch, self._encoded, self._permutation = None, None, None

  def at(self, step: int) -> Batch:
    """The batch that trains global step `step` + 1 of the stage."""
    epoch = step // self._per_epoch
    if epoch != self._epoch:
      if self._encoded is None or self._data.redraw is not None:
        self._encoded = self._encode(self._data.train_for_epoch(epoch))
      self._permutation = epoch_permutation(self._order_key, epoch, len(self._data.train))
      self._epoch = epoch
    rows, weights = batch_rows(self._permutation, step % self._per_epoch, self._batch_size)
    return Batch(**{name: array[rows] for name, array in self._encoded.items()}, weights=weights)
