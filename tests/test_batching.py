"""Step-indexed data order, and the order key each stage run gets (docs/study.md §3.8, §7.3, bug #3)."""

import os
import re

import numpy as np
import pytest

from iml_jax import experiment
from iml_jax import workdir as workdir_layout
from iml_jax.data import batching
from iml_jax.data.common import Example, StageData
from iml_jax.specs import Experiment
from test_experiment import ROOT


def test_stage2_order_depends_on_both_seeds():
  """Bug #3 fixed: the original seeds stage-2 training with seed_stage2 alone, so every stage-1 seed trains
  its stage 2 in the same order; here the order key holds (seed, seed_stage2, stage index)."""
  config = experiment.load_config(f"{ROOT}/configs/default.py:tiny")
  config.n_seeds_stage2 = 2
  runs = {
    (seed, run.seed_stage2, run.name): run
    for seed in (0, 1)
    for run in workdir_layout.plan_stage_runs(Experiment.from_config(config), "/w", seed)
  }
  keys = {k: run.order_key for k, run in runs.items()}
  assert keys[(0, 0, "stage2")] == (0, 0, 1) and keys[(1, 0, "stage2")] == (1, 0, 1)
  assert keys[(1, 1, "stage2")] == (1, 1, 1) and keys[(1, 0, "stage1")] == (1, 0, 0)
  orders = {k: tuple(batching.epoch_permutation(key, 0, 50)) for k, key in keys.items()}
  assert len(set(orders.values())) == len(orders)  # every stage run trains in its own order
  assert orders[(0, 0, "stage2")] != orders[(1, 0, "stage2")]  # the same stage-2 seed under two stage-1 seeds


def test_order_is_a_pure_function_of_key_and_epoch():
  first = batching.epoch_permutation((3, 1, 1), 4, 100)
  np.testing.assert_array_equal(first, batching.epoch_permutation((3, 1, 1), 4, 100))
  assert sorted(first) == list(range(100))
  assert not np.array_equal(first, batching.epoch_permutation((3, 1, 1), 5, 100))


def test_last_batch_is_filled_with_weight_zero_rows():
  rows, weights = batching.batch_rows(np.arange(10), 2, 4)
  np.testing.assert_array_equal(rows, [8, 9, 0, 0])
  np.testing.assert_array_equal(weights, [1, 1, 0, 0])


def test_steps_per_epoch_count_as_the_hf_trainer():
  """§7.3: 16,000 examples at 128 x 2 → 62 steps (1,240 in 20 epochs); 960 → 4 per epoch."""
  assert batching.steps_per_epoch(16000, 256, 2) == 62
  assert 20 * batching.steps_per_epoch(16000, 256, 2) == 1240
  assert batching.steps_per_epoch(960, 256, 2) == 4
  assert batching.steps_per_epoch(16000, 256, 1) == 63  # no accumulation: the partial batch is a step
  assert batching.steps_per_epoch(100, 512, 64) == 1


def _counting_encoder(calls):
  def encode(examples):
    calls.append(len(examples))
    return {"tokens": np.array([[ord(ex.prompt[0]), len(ex.prompt)] for ex in examples])}

  return encode


def test_stage_batches_encode_fixed_examples_once_and_follow_the_step_indexed_order():
  examples = [Example(chr(97 + i) * (i + 1), " x") for i in range(10)]
  calls = []
  batches = batching.StageBatches(StageData(examples, {}), _counting_encoder(calls), (3, 0, 1), 4, 3)
  for step in range(9):  # three epochs of 3 steps (the last batch of each filled up with weight-0 rows)
    permutation = batching.epoch_permutation((3, 0, 1), step // 3, 10)
    rows, weights = batching.batch_rows(permutation, step % 3, 4)
    batch = batches.at(step)
    np.testing.assert_array_equal(batch["tokens"][:, 0], [97 + r for r in rows])
    np.testing.assert_array_equal(batch["weights"], weights)
  assert calls == [10]  # encoded once for the stage


def test_stage_batches_encode_each_epoch_of_a_redrawing_task():
  def redraw(epoch):
    return [Example(chr(97 + epoch) * (i + 1), " x") for i in range(6)]

  calls = []
  batches = batching.StageBatches(StageData(redraw(0), {}, redraw), _counting_encoder(calls), (0,), 6, 1)
  assert [int(batches.at(step)["tokens"][0, 0]) for step in range(3)] == [97, 98, 99]
  assert calls == [6, 6, 6]


def test_batch_bytes_are_what_a_step_allocates():
  """The estimate the memory check uses, against the arrays one step's batch really holds."""
  example = {"tokens": np.zeros((1, 10), np.int32), "loss_mask": np.zeros((1, 9), np.float32)}
  encoded = {name: np.repeat(array, 50, axis=0) for name, array in example.items()}
  rows, weights = batching.batch_rows(batching.epoch_permutation((0,), 0, 50), 0, 64)
  allocated = sum(array[rows].nbytes for array in encoded.values()) + rows.nbytes + weights.nbytes
  assert batching.batch_bytes(example, 64) == allocated == 64 * (40 + 36 + 8 + 4)


def test_a_batch_larger_than_the_machine_is_one_line_before_anything_is_built(tmp_path):
  """It once reached numpy's allocation (a traceback) after the stage had compiled and evaluated."""
  from iml_jax.errors import IMLError
  from test_experiment import tiny_config

  config = tiny_config(n_seeds=1)
  config.stages.stage1.batch_size = 2**40
  with pytest.raises(IMLError) as raised:
    experiment.run(config, str(tmp_path / "run"))
  assert re.fullmatch(
    r"config field stages.stage1.batch_size = 1099511627776: one step's batch needs [\d,]+\.\d GiB of host memory, "
    r"more than the machine's [\d,]+\.\d GiB; lower it",
    str(raised.value),
  ), raised.value
  assert os.listdir(tmp_path / "run") == []  # a fresh workdir that failed before its first checkpoint: left empty
