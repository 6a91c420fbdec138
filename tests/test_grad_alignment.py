"""Per-example gradients and alignment statistics against a loop of `jax.grad` and NumPy on flat vectors."""

import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iml_jax import grad_alignment, sharding
from iml_jax.models import registry
from iml_jax.train import unbox
from conftest import shared_per_module

D, K, L = 5, 3, 7


def _decoder(**fields):
  cfg = registry.make_config(
    "gpt_neox", vocab_size=32, d_model=16, n_layers=2, n_heads=2, d_mlp=32, max_len=L, init_std=0.2, **fields
  )
  model = registry.build(cfg)
  return model, unbox(registry.init_params(model, jax.random.key(0)))


def _examples(shape, seed):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, 32, size=shape + (L,)).astype(np.int32)
  loss_mask = (rng.random(shape + (L - 1,)) < 0.8).astype(np.float32)
  return {"tokens": tokens, "loss_mask": loss_mask}


@functools.cache
def _single_example_grad(model):
  def loss(params, batch):
    w = batch["loss_mask"]
    return jnp.sum(registry.token_losses(model, params, batch) * w) / jnp.maximum(jnp.sum(w), 1.0)

  return jax.jit(jax.grad(loss))


def _flat_loop_gradient(model, params, example):
  """The original's method: one gradient per example on a batch of one, flattened."""
  batch = {k: jnp.asarray(v)[None] for k, v in example.items()}
  grads = _single_example_grad(model)(params, batch)
  return np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads)]).astype(np.float64)


def _row(tree, *index):
  return {k: v[index] for k, v in tree.items()}


# slow (25 s): in CI the tied-table test checks the dense per-example gradients' statistics against the same loop
@pytest.mark.slow
def test_per_example_gradients_equal_a_loop_of_grad():
  model, params = _decoder()
  examples = _examples((4,), 0)
  stacked = grad_alignment.per_example_gradients(model, params, jax.tree.map(jnp.asarray, examples))
  for i in range(4):
    ours = np.concatenate([np.ravel(g[i]) for g in jax.tree.leaves(stacked)])
    reference = _flat_loop_gradient(model, params, _row(examples, i))
    # fp32 rounding differs between the two compiled programs: compare as vectors, relative to the norm.
    assert np.linalg.norm(ours - reference) <= 1e-6 * np.linalg.norm(reference)


def _assert_factors_add_up_to_the_dense_gradient(model, params, example, factored, mask=None):
  """Rows and kernel factors added into a zero tree equal `example_gradient`, which is returned."""
  dense = grad_alignment.example_gradient(model, params, example, mask)
  zeros = jax.tree.map(jnp.zeros_like, params)
  added = grad_alignment._add_into(zeros, factored, grad_alignment.factored_leaves(model))
  for got, expected in zip(jax.tree.leaves(added), jax.tree.leaves(dense)):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)
  return dense


def test_factored_gradients_add_up_to_the_dense_gradient():
  """The input table's gradient kept as one row per input position adds up to the dense gradient, repeated
  tokens included, with the trainable mask applied (stage 2 trains alias rows only); the output kernel's kept as
  hᵀ · dlogits equals its dense gradient. Norms from the factors equal the dense tree's."""
  model, params = _decoder()
  example = jax.tree.map(jnp.asarray, _row(_examples((1,), 5), 0))
  example["tokens"] = example["tokens"].at[3].set(example["tokens"][1])  # a repeated input token
  mask = jax.tree.map(lambda p: jnp.full((), 0.5, p.dtype), params)
  mask["embed_in"]["embedding"] = jnp.zeros((32, 1)).at[example["tokens"][:4], 0].set(1.0)
  factored = grad_alignment.example_gradient_rows(model, params, example, mask)
  assert factored.rows.shape == (L - 1, 16) and factored.dense["embed_in"]["embedding"] is None
  assert factored.h.shape == (L - 1, 16) and factored.dlogits.shape == (L - 1, 32)
  assert factored.dense["embed_out"]["kernel"] is None  # both factored paths ran
  dense = _assert_factors_add_up_to_the_dense_gradient(model, params, example, factored, mask)
  # two column blocks, the second padded: L1, L∞ from blocks as from the whole kernel
  with mock.patch.object(grad_alignment, "KERNEL_BLOCK", 20):
    norms = grad_alignment.gradient_norms(factored)
  expected = grad_alignment.tree_norms(dense)
  for name in ("l1", "l2", "linf"):
    assert norms[name] == pytest.approx(float(expected[name]), rel=1e-5), name


@pytest.mark.parametrize(
  "family, fields",
  [
    ("gptj", dict(output_bias=True, shared_input_norm=True, rotary_pct=0.25, qkv_bias=False)),
    ("llama", dict(norm="rmsnorm", activation="silu", gated_mlp=True, parallel_residual=False, qkv_bias=False)),
  ],
)
def test_the_other_untied_families_factor_exactly(family, fields):
  """GPT-J (an output bias, which stays dense) and Llama (RMSNorm before the projection): rows and factors add
  up to the dense per-example gradient."""
  cfg = registry.make_config(family, vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=L, **fields)
  model = registry.build(cfg)
  params = unbox(registry.init_params(model, jax.random.key(0)))
  example = jax.tree.map(jnp.asarray, _row(_examples((1,), 6), 0))
  factored = grad_alignment.example_gradient_rows(model, params, example)
  assert factored.dlogits.shape == (L - 1, 32) and factored.dense["embed_out"]["kernel"] is None
  _assert_factors_add_up_to_the_dense_gradient(model, params, example, factored)


def test_kernel_statistics_from_column_blocks_equal_the_whole_kernel():
  """L1, L∞ and the squared distance to a mean of hᵀ · dlogits, built 4 columns at a time (the last block padded),
  equal the whole matrix's; the largest entry sits in the last column."""
  rng = np.random.default_rng(0)
  h, dlogits, mean = rng.normal(size=(3, 5)), rng.normal(size=(3, 10)), rng.normal(size=(5, 10))
  dlogits[:, -1] *= 100
  factored = grad_alignment.Gradient({}, *(jnp.asarray(x, jnp.float32) for x in ([0], [[0.0]], h, dlogits)))
  with mock.patch.object(grad_alignment, "KERNEL_BLOCK", 4):
    got = grad_alignment._kernel_blocks(factored, jnp.asarray(mean, jnp.float32))
  kernel = h.T @ dlogits
  assert float(got["l1"]) == pytest.approx(np.abs(kernel).sum(), rel=1e-6)
  assert float(got["linf"]) == pytest.approx(np.abs(kernel).max(), rel=1e-6)
  assert float(got["sq_dist"]) == pytest.approx(np.square(kernel - mean).sum(), rel=1e-6)


def _reference_statistics(model, params, sets):
  flat = {
    label: (
      [_flat_loop_gradient(model, params, _row(defs, i)) for i in range(len(defs["tokens"]))],
      [
        [_flat_loop_gradient(model, params, _row(qs, i, j)) for j in range(qs["tokens"].shape[1])]
        for i in range(len(defs["tokens"]))
      ],
    )
    for label, (defs, qs) in sets.items()
  }
  pairs = {}
  for label, (g_defs, g_qs) in flat.items():
    cos = [[g_q @ g_d / np.linalg.norm(g_q) / np.linalg.norm(g_d) for g_q in row] for g_d, row in zip(g_defs, g_qs)]
    dist = [[np.linalg.norm(g_q - g_d) for g_q in row] for g_d, row in zip(g_defs, g_qs)]
    pairs[label] = {
      "cos": np.array(cos),
      "dist": np.array(dist),
      "def_l1": np.array([np.abs(g).sum() for g in g_defs]),
      "def_linf": np.array([np.abs(g).max() for g in g_defs]),
      "q_l2": np.array([[np.linalg.norm(g) for g in row] for row in g_qs]),
    }
  every = [g for g_defs, g_qs in flat.values() for g in g_defs + [g for row in g_qs for g in row]]
  mean = np.mean(every, axis=0)
  variance = np.mean([np.sum((g - mean) ** 2) for g in every])
  mean_cos = np.mean([g @ mean / np.linalg.norm(g) / np.linalg.norm(mean) for g in every])
  return pairs, variance, mean_cos


@pytest.fixture(scope=shared_per_module)
def two_sets_and_reference():
  model, params = _decoder()
  sets = {"d1": (_examples((D,), 1), _examples((D, K), 2)), "d2": (_examples((D,), 3), _examples((D, K), 4))}
  return model, params, sets, _reference_statistics(model, params, sets)


def test_statistics_equal_numpy_on_flat_gradients_with_padded_chunks(two_sets_and_reference):
  model, params, sets, (pairs, variance, mean_cos) = two_sets_and_reference
  assert any(len(set(t[:-1])) < L - 1 for t in sets["d1"][0]["tokens"])  # repeated tokens: rows add up
  # chunk 2 divides neither set (5, 15): padded chunks; blocks of 20 output-kernel columns: the last one padded
  with mock.patch.object(grad_alignment, "KERNEL_BLOCK", 20):
    result = grad_alignment.alignment(model, params, sets, chunk=2)
  for label in sets:
    for name, expected in pairs[label].items():
      np.testing.assert_allclose(
        result.pairs[label][name], expected, rtol=2e-5, atol=1e-6 * np.abs(expected).max(), err_msg=f"{label} {name}"
      )
  assert result.variance == pytest.approx(variance, rel=2e-5)
  assert result.mean_cos_to_mean == pytest.approx(mean_cos, rel=2e-5)
  assert result.scalars()["grad/d1_cos"] == pytest.approx(pairs["d1"]["cos"].mean(), rel=2e-5)


def test_a_tied_embedding_table_keeps_the_dense_path():
  """The output projection reads a tied table everywhere: its gradient stays dense, statistics as NumPy's."""
  model, params = _decoder(tie_embeddings=True)
  sets = {"d1": (_examples((2,), 1), _examples((2, 2), 2))}
  rows = grad_alignment.example_gradient_rows(model, params, jax.tree.map(jnp.asarray, _row(sets["d1"][0], 0)))
  assert rows.rows.shape[0] == 0 and rows.dense["embed_in"]["embedding"].shape == (32, 16)
  pairs, variance, mean_cos = _reference_statistics(model, params, sets)
  result = grad_alignment.alignment(model, params, sets, chunk=2)
  for name, expected in pairs["d1"].items():
    np.testing.assert_allclose(result.pairs["d1"][name], expected, rtol=2e-5, atol=1e-6 * np.abs(expected).max())
  assert result.variance == pytest.approx(variance, rel=2e-5)
  assert result.mean_cos_to_mean == pytest.approx(mean_cos, rel=2e-5)


# slow (52 s with the suite running; sharded = unsharded training is in CI, test_train): run with `-m slow`
@pytest.mark.slow
def test_sharded_parameters_give_the_unsharded_statistics():
  model, params = _decoder()
  sets = {"d1": (_examples((D,), 1), _examples((D, K), 2))}
  expected = grad_alignment.alignment(model, params, sets, chunk=2)
  mesh = sharding.make_mesh((2, 2, 2))
  rules = sharding.rules_for("fsdp_tensor")
  boxed = jax.eval_shape(lambda: registry.init_params(model, jax.random.key(0)))
  shardings = sharding.logical_shardings(boxed, mesh, rules)
  sharded = jax.device_put(params, shardings)
  assert any(len(s.device_set) > 1 and not s.is_fully_replicated for s in jax.tree.leaves(shardings))
  result = grad_alignment.alignment(model, sharded, sets, chunk=2)
  for name, values in expected.pairs["d1"].items():
    np.testing.assert_allclose(result.pairs["d1"][name], values, rtol=1e-5, atol=1e-6 * np.abs(values).max())
  assert result.variance == pytest.approx(expected.variance, rel=1e-5)


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_seq2seq_per_example_gradients_equal_a_loop():
  cfg = registry.make_config("t5", vocab_size=29, d_model=16, d_kv=4, d_ff=32, n_heads=2, n_layers=1, init_std=0.2)
  model = registry.build(cfg)
  params = unbox(registry.init_params(model, jax.random.key(0)))
  rng = np.random.default_rng(0)
  examples = {
    "inputs": rng.integers(0, 29, (3, 6)).astype(np.int32),
    "input_mask": np.ones((3, 6), bool),
    "targets": rng.integers(0, 29, (3, 4)).astype(np.int32),
    "loss_mask": np.ones((3, 4), np.float32),
  }
  stacked = grad_alignment.per_example_gradients(model, params, jax.tree.map(jnp.asarray, examples))
  for i in range(3):
    ours = np.concatenate([np.ravel(g[i]) for g in jax.tree.leaves(stacked)])
    reference = _flat_loop_gradient(model, params, _row(examples, i))
    assert np.linalg.norm(ours - reference) <= 1e-6 * np.linalg.norm(reference)


def test_analysis_differentiates_the_loss_that_training_minimised(tmp_path):
  """docs/study.md §9: the per-example gradient of a trained definition equals the gradient of its term in the
  training loss, with the stage's own masks (the CPU default leaves the alias token out of the loss)."""

  from iml_jax import experiment, stage, train
  from test_experiment import ROOT

  config = experiment.load_config(f"{ROOT}/configs/default.py:tiny")
  assert config.loss.exclude_alias_tokens
  with experiment.seed_contexts(config, str(tmp_path)) as (spec, contexts):
    ctx = next(contexts)
    stage_cfg = spec.stages["stage2"]
    data = ctx.task.stage_data(0, 1, stage_cfg.train_subset)
    alias_ids = stage.alias_token_ids(ctx, stage_cfg)
    definitions, _ = stage.alignment_sets(ctx, data.evals, alias_ids)["d1consis"]
    first = _row(definitions, 0)
    trained = next(
      ex
      for ex in data.train
      if ex.prompt + ex.completion
      == data.evals["train_defs_d1consis"][0].prompt + data.evals["train_defs_d1consis"][0].completion
    )
    batch = {**stage._encode(ctx, [trained], alias_ids), "weights": np.ones(1, np.float32)}
  # outside the run's mesh: eager model code cannot take its activation constraints (a run jits everything)
  params = unbox(registry.init_params(ctx.model, jax.random.key(1)))

  def training_loss(p):
    loss_sum, weight_sum = train._loss_sums(ctx.model, p, batch)
    return loss_sum / weight_sum

  with jax.default_matmul_precision("highest"):
    expected = jax.grad(training_loss)(params)
  np.testing.assert_array_equal(first["loss_mask"], batch["loss_mask"][0])
  assert batch["loss_mask"][0].sum() < batch["loss_mask"].shape[1]  # the alias token is left out
  got = grad_alignment.example_gradient(ctx.model, params, first)
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7)
