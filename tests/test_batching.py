"""Step-indexed data order, and the order key each stage run gets (docs/study.md §3.8, §7.3, bug #3)."""
import numpy as np

from iml_jax import experiment
from iml_jax import workdir as workdir_layout
from iml_jax.data import batching
from test_experiment import ROOT


def test_stage2_order_depends_on_both_seeds():
  """Bug #3 fixed: the original seeds stage-2 training with seed_stage2 alone, so every stage-1 seed trains
  its stage 2 in the same order; here the order key holds (seed, seed_stage2, stage index)."""
  config = experiment.load_config(f"{ROOT}/configs/default.py:tiny")
  config.n_seeds_stage2 = 2
  runs = {(seed, run.seed_stage2, run.name): run for seed in (0, 1)
          for run in workdir_layout.plan_stage_runs(config, "/w", seed)}
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
