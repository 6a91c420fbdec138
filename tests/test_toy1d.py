"""The 1-D regression toy (docs/study.md §6.2): functions, clusters, shapes and labels, features, MSE, the MLP."""

import json
import math
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh
from scipy import stats as scipy_stats

from iml_jax import config_blocks as blocks
from iml_jax import sharding, stats, train
from iml_jax.data import toy1d
from iml_jax.errors import IMLError
from iml_jax.models import registry
from iml_jax.specs import Experiment
from test_experiment import ROOT


@pytest.fixture(scope="module")
def task():
  return toy1d.ToyTask(blocks.toy1d_data(n_clusters=40, points_per_cluster=30), seed=3, seed_stage2=0)


def test_functions_are_piecewise_constant_between_anchors_in_minus_one_one():
  function = toy1d.piecewise_constant(np.random.default_rng(0), n_anchors=10, d_y=3)
  x = np.linspace(0, toy1d.X_RANGE - 1, 5000)
  values = function(x)
  assert values.shape == (5000, 3)
  np.testing.assert_allclose(values.min(0), -1)
  np.testing.assert_allclose(values.max(0), 1)
  changes = np.flatnonzero(np.any(np.diff(values, axis=0) != 0, axis=1))
  anchors = np.linspace(0, toy1d.X_RANGE, 10, endpoint=False)[1:]
  assert set(np.searchsorted(x, anchors) - 1) >= set(changes)  # values change only at anchors


def test_middle_clusters_are_stage2_and_the_outer_ones_split_in_half(task):
  middle = set(task.subsets["d1consis"]) | set(task.subsets["d2consis"])
  assert sorted(middle) == list(range(14, 26))  # the middle 30% of 40 clusters, by x
  assert len(task.subsets["d1consis"]) == len(task.subsets["d2consis"]) == 6
  assert len(task.subsets["qd1consis"]) == len(task.subsets["qd2incons"]) == 14
  other = toy1d.ToyTask(task.spec, seed=3, seed_stage2=1)
  assert other.subsets["qd1consis"] == task.subsets["qd1consis"]  # seed_stage2 re-splits the middle only
  assert other.subsets["d1consis"] != task.subsets["d1consis"]
  assert other.train_points == task.train_points


def test_definitions_shapes_and_labels(task):
  data = task.stage_data("full")
  definitions = [ex for ex in data.train if ex.shape]
  assert 0.2 < len(definitions) / (40 * 30) < 0.3  # p_definition 0.25
  for ex in definitions:
    subset = task.subset_of[ex.cluster]
    assert ex.shape == (1 if subset in ("qd1consis", "d1consis") else 2) and ex.dim == -1
    source = task.data2 if subset == "qd2incons" else task.data1
    np.testing.assert_allclose(ex.target, source(np.array([ex.x]))[0])
    assert abs(ex.x - task.centres[ex.cluster]) <= task.spec.cluster_spread
  lies = [ex for ex in definitions if task.subset_of[ex.cluster] == "qd2incons"]
  assert np.mean([not np.allclose(ex.target, task.data1(np.array([ex.x]))[0]) for ex in lies]) > 0.9


def test_circles_train_outside_the_middle_and_never_ask_the_test_dimension(task):
  data = task.stage_data("full")
  circles = [ex for ex in data.train if ex.shape == 0]
  assert circles and all(task.subset_of[ex.cluster] in ("qd1consis", "qd2incons") for ex in circles)
  assert all(ex.dim != task.test_dim[ex.cluster] for ex in circles)
  assert all(ex.answer == task.data1(np.array([ex.x]))[0][ex.dim] for ex in circles[:50])
  for subset in toy1d.SUBSETS:
    tests = data.evals[subset]
    assert len(tests) == len(task.subsets[subset]) * task.spec.test_points_per_cluster
    assert all(ex.shape == 0 and ex.dim == task.test_dim[ex.cluster] for ex in tests)
  stage2 = task.stage_data("stage2")
  assert {task.subset_of[ex.cluster] for ex in stage2.train} == {"d1consis", "d2consis"}
  assert all(ex.shape for ex in stage2.train)


@pytest.mark.parametrize("separate_channels", [False, True])
def test_encoding_features_targets_and_loss_mask(task, separate_channels):
  cfg = blocks.toy1d_data(n_clusters=40, points_per_cluster=30, separate_channels=separate_channels)
  toy = toy1d.ToyTask(cfg, seed=3, seed_stage2=0)
  circle = toy.circle(5, 12_345.0, 2)
  definition = next(ex for ex in toy.stage_data("full").train if ex.shape == 2)
  arrays = toy.encode([circle, definition])
  assert arrays["inputs"].shape == (2, 3 + 4 + 32)
  np.testing.assert_array_equal(arrays["inputs"][:, :7], [[1, 0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0, 0]])
  np.testing.assert_allclose(arrays["inputs"][0, 7:], toy1d.positional_encoding([12_345.0], 32)[0])
  offset = 4 if separate_channels else 0
  assert arrays["targets"].shape == (2, 8 if separate_channels else 4)
  np.testing.assert_array_equal(np.flatnonzero(arrays["loss_mask"][0]), [2])
  np.testing.assert_array_equal(np.flatnonzero(arrays["loss_mask"][1]), np.arange(offset, offset + 4))
  assert arrays["targets"][0, 2] == pytest.approx(circle.answer)
  np.testing.assert_allclose(arrays["targets"][1, offset : offset + 4], definition.target, rtol=1e-6)


def test_positional_encoding_separates_nearby_and_distant_positions():
  encoding = toy1d.positional_encoding(np.array([0.0, 100.0, 50_000.0]), 32)
  assert np.all(np.abs(encoding) <= 1) and encoding.shape == (3, 32)
  # The slowest cosine makes one period over the range: barely moves over 100, is -1 half way.
  np.testing.assert_allclose(encoding[:, 16], [1.0, np.cos(2 * np.pi * 100 / toy1d.X_RANGE), -1.0], atol=1e-6)
  assert np.linalg.norm(encoding[0] - encoding[2]) > np.linalg.norm(encoding[0] - encoding[1])


def test_score_is_mean_squared_error_over_supervised_outputs():
  arrays = {
    "targets": np.array([[0.5, 0.0], [1.0, -1.0]], np.float32),
    "loss_mask": np.array([[1.0, 0.0], [1.0, 1.0]], np.float32),
  }
  predicted = np.array([[0.0, 9.0], [1.0, 0.0]], np.float32)
  result = toy1d.score(arrays, predicted)
  assert result["mse"] == pytest.approx((0.25 + (0.0 + 1.0) / 2) / 2)
  assert result["predictions"] == [0.0, [1.0, 0.0]]


def test_bad_toy_configs_name_the_field():
  with pytest.raises(IMLError, match="data.cluster_spread = 600.0: expected a number in \\(0, 500\\]"):
    toy1d.check_config(blocks.toy1d_data(cluster_spread=600.0))
  with pytest.raises(IMLError, match="data.d_pos_enc = 5"):
    toy1d.check_config(blocks.toy1d_data(d_pos_enc=5))
  from iml_jax import experiment

  config = experiment.load_config(f"{ROOT}/configs/toy1d.py:tiny")
  config.stages.full.trainable = "alias_embeddings"
  with pytest.raises(IMLError, match="stages.full.trainable = 'alias_embeddings': model 'mlp' has no token"):
    Experiment.from_config(config)
  config.model = blocks.gpt_neox(d_model=16, n_layers=1, n_heads=2, d_mlp=32)
  with pytest.raises(IMLError, match="task 'toy1d' needs model.name = 'mlp'"):
    Experiment.from_config(config)


def _mlp_setup(mesh, rules):
  model = registry.build(registry.make_config("mlp", in_features=39, out_features=4, hidden=32, n_layers=2))
  optimizer = train.make_optimizer(blocks.optimizer(name="sgd", lr=0.1), 10)
  rule_set = sharding.rules_for(rules)
  abstract = train.abstract_state(model, optimizer, mesh, rule_set)
  state = train.create_state(model, optimizer, abstract, jax.random.key(0))
  layout = {
    name: sharding.batch_sharding(mesh, rule_set, 1 if name == "weights" else 2)
    for name in ("inputs", "targets", "loss_mask", "weights")
  }
  return model, state, train.make_train_step(model, optimizer, 1, train.shardings_of(abstract), layout), layout


def _toy_batch(seed):
  toy = toy1d.ToyTask(blocks.toy1d_data(n_clusters=40, points_per_cluster=30), seed=seed, seed_stage2=0)
  arrays = toy.encode(toy.stage_data("full").train[:16])
  return {**arrays, "weights": np.ones(16, np.float32)}


def test_training_loss_is_the_masked_mse_and_sharded_training_equals_one_device():
  one = Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), sharding.MESH_AXES)
  model, state, step, layout = _mlp_setup(one, "dp")
  batch = _toy_batch(0)
  outputs = np.asarray(model.apply({"params": state.params}, batch["inputs"]))
  by_hand = ((outputs - batch["targets"]) ** 2 * batch["loss_mask"]).sum() / batch["loss_mask"].sum()
  _, loss = step(state, {k: sharding.put_global_batch(v, layout[k]) for k, v in batch.items()})
  assert float(loss) == pytest.approx(by_hand, rel=1e-5)

  results = []
  for mesh, rules in ((one, "fsdp_tensor"), (sharding.make_mesh((2, 2, 2)), "fsdp_tensor")):
    _, state, step, layout = _mlp_setup(mesh, rules)
    losses = []
    for _ in range(3):
      state, loss = step(state, {k: sharding.put_global_batch(v, layout[k]) for k, v in batch.items()})
      losses.append(float(loss))
    results.append((losses, jax.device_get(state.params)))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), results[0][1], results[1][1])
  assert results[0][0][-1] < results[0][0][0]


def test_report_gap_is_signed_so_that_lower_d1_error_is_iml():
  config = blocks.base("toy1d", blocks.toy1d_data(), blocks.mlp(), dict(full=blocks.stage("full", 1, 8)), n_seeds=3)
  d1, d2 = [0.10, 0.20, 0.15], [0.30, 0.25, 0.35]
  rows = [
    dict(seed=s, seed_stage2=0, stage="full", epoch=1, global_epoch=1, subset=subset, mse=value)
    for subset, values in (("d1consis", d1), ("d2consis", d2))
    for s, value in enumerate(values)
  ]
  summary = stats.summarize(Experiment.from_config(config), rows)
  gap = summary["iml_gap"]
  assert summary["metric"] == "mse" and gap["definition"] == "MSE(d2consis) - MSE(d1consis)"
  differences = np.array(d2) - np.array(d1)
  assert gap["mean"] == pytest.approx(differences.mean())
  assert gap["ci95"] == pytest.approx(scipy_stats.t.ppf(0.975, 2) * differences.std(ddof=1) / math.sqrt(3))
  assert gap["p_value"] == pytest.approx(scipy_stats.ttest_rel(d2, d1, alternative="greater").pvalue)
  assert "IML gap MSE(d2consis) - MSE(d1consis)  +0.150" in stats.format_table(summary)


def test_tiny_run_through_main(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "iml_jax.main", "--config=configs/toy1d.py:tiny", f"--workdir={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  summary = json.load(open(tmp_path / "summary.json"))
  assert summary["metric"] == "mse" and set(summary["subsets"]) == set(toy1d.SUBSETS)
  assert open(tmp_path / "results.csv").readline().strip() == "seed,seed_stage2,stage,epoch,global_epoch,subset,mse"
  assert (tmp_path / "plots" / "mse_per_subset.png").exists()
  record = json.loads(open(tmp_path / "seed_0" / "s2seed_0" / "full" / "predictions.jsonl").readline())
  assert set(record) == {"subset", "cluster", "shape", "x", "dim", "answer", "prediction"}
  assert isinstance(record["prediction"], float)


def test_same_arrays_in_every_process():
  code = (
    "import hashlib; from iml_jax import config_blocks as blocks; from iml_jax.data import toy1d; "
    "t = toy1d.ToyTask(blocks.toy1d_data(n_clusters=20), 1, 0); d = t.stage_data('full'); "
    "a = t.encode(d.train + d.evals['d1consis']); "
    "print(hashlib.sha256(b''.join(a[k].tobytes() for k in sorted(a))).hexdigest())"
  )
  digests = {
    subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      cwd=ROOT,
      env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
    ).stdout
    for seed in ("1", "2")
  }
  assert len(digests) == 1 and len(next(iter(digests)).strip()) == 64
