import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iml_jax.errors import IMLError
from iml_jax.models.decoder import (
  DecoderConfig,
  DecoderLM,
  causal_inputs,
  init_params,
  token_losses,
  weighted_loss,
)
from iml_jax.models.decoding import greedy_decode
from iml_jax.models.layers import apply_rotary, causal_mask
from iml_jax.probes import hidden_states
from iml_jax.models.registry import abstract_params, to_layout
from iml_jax.train import unbox

VARIANTS = {
  "pythia": dict(position_embedding="rotary", parallel_residual=True, rotary_pct=0.25),
  "full_rotary_sequential": dict(position_embedding="rotary", parallel_residual=False, rotary_pct=1.0),
  "gpt2_style": dict(position_embedding="learned", parallel_residual=False),
  "llama_gqa": dict(
    rotary_pct=1.0,
    parallel_residual=False,
    norm="rmsnorm",
    activation="silu",
    gated_mlp=True,
    n_kv_heads=2,
    qkv_bias=False,
    proj_bias=False,
  ),
}


def _model(variant, **overrides):
  fields = dict(
    vocab_size=37, d_model=32, n_layers=2, n_heads=4, d_mlp=64, max_len=24, init_std=0.3, embedding_init_std=0.3
  )
  cfg = DecoderConfig(**{**fields, **VARIANTS[variant], **overrides})
  model = DecoderLM(cfg)
  return model, unbox(init_params(model, jax.random.key(1)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_causality(variant):
  """The loss at position t has exactly zero gradient w.r.t. the inputs after t."""
  model, params = _model(variant)
  tokens = jax.random.randint(jax.random.key(2), (2, 12), 0, 37)
  embeddings = model.apply({"params": params}, tokens, method=model.embed)
  positions, mask = causal_inputs(tokens)

  def logit_sum_at(t, x):
    logits, _ = model.apply({"params": params}, x, positions, mask, method=model.from_embeddings)
    return logits[:, t].sum()

  for t in (0, 5, 10):
    grads = jax.jit(jax.grad(lambda x: logit_sum_at(t, x)))(embeddings)  # jitted: one compile, not one per op
    norms = jnp.abs(grads).sum(axis=(0, 2))
    assert float(norms[t + 1 :].max(initial=0.0)) == 0.0
    assert float(norms[: t + 1].min()) > 0.0


def test_local_layers_see_only_their_window():
  model, params = _model("gpt2_style", n_layers=1, local_layers=(0,), local_window=3)
  tokens = jax.random.randint(jax.random.key(2), (1, 10), 0, 37)
  embeddings = model.apply({"params": params}, tokens, method=model.embed)
  positions, mask = causal_inputs(tokens)
  grads = jax.grad(
    lambda x: model.apply({"params": params}, x, positions, mask, method=model.from_embeddings)[0][:, 7].sum()
  )(embeddings)
  seen = np.flatnonzero(np.abs(np.asarray(grads)).sum(axis=(0, 2)))
  assert seen.tolist() == [5, 6, 7]


def test_rotary_is_a_rotation_and_relative():
  x = jax.random.normal(jax.random.key(0), (1, 6, 2, 8))
  pos = jnp.arange(6)[None]
  rotated = apply_rotary(x, pos, 8, 10000.0)
  np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  np.testing.assert_array_equal(apply_rotary(x, pos, 4, 10000.0)[..., 4:], x[..., 4:])  # partial rotary
  q, k = x[:, :1], x[:, 1:2]
  dot = lambda a, b: float((apply_rotary(q, a, 8, 1e4) * apply_rotary(k, b, 8, 1e4)).sum())
  assert dot(jnp.array([[3]]), jnp.array([[1]])) == pytest.approx(dot(jnp.array([[7]]), jnp.array([[5]])), rel=1e-4)


def test_bfloat16_compute_keeps_float32_params():
  model, params = _model("pythia", dtype="bfloat16")
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  tokens = jnp.ones((2, 5), jnp.int32)
  logits, _ = model.apply({"params": params}, tokens, *causal_inputs(tokens))
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())


def test_invalid_model_config_names_the_field():
  with pytest.raises(IMLError, match="model.d_model = 30 must be divisible by model.n_heads = 4"):
    DecoderConfig(vocab_size=10, d_model=30, n_heads=4)
  with pytest.raises(IMLError, match=r"model.loss_chunk = -1: expected 0 \(all positions at once\) or a positive"):
    DecoderConfig(vocab_size=10, loss_chunk=-1)
  with pytest.raises(IMLError, match="model.position_embedding"):
    DecoderConfig(vocab_size=10, position_embedding="alibi")
  with pytest.raises(IMLError, match="model.n_kv_heads = 3: expected 0 or a divisor of model.n_heads = 4"):
    DecoderConfig(vocab_size=10, n_heads=4, n_kv_heads=3)
  with pytest.raises(IMLError, match=r"model.local_layers = \(5,\): expected layer indices in \[0, 2\)"):
    DecoderConfig(vocab_size=10, n_layers=2, local_layers=[5])
  with pytest.raises(IMLError, match="model.shared_input_norm = True: expected False unless model.parallel_residual"):
    DecoderConfig(vocab_size=10, parallel_residual=False, shared_input_norm=True)
  with pytest.raises(IMLError, match="model.output_bias = True: expected False with tied embeddings"):
    DecoderConfig(vocab_size=10, tie_embeddings=True, output_bias=True)


# llama_gqa is slow (27 s with the suite running; CI runs pythia): run with `-m slow`
@pytest.mark.parametrize("variant", ["pythia", pytest.param("llama_gqa", marks=pytest.mark.slow)])
def test_attention_implementations_remat_and_scan_compute_the_same(variant):
  """`jax.nn.dot_product_attention` (XLA), rematerialised and scanned blocks give our einsum model's logits
  and grads."""
  base, params = _model(variant)
  tokens = jax.random.randint(jax.random.key(3), (2, 9), 0, 37)
  positions, _ = causal_inputs(tokens)
  mask = jnp.broadcast_to(causal_mask(9), (2, 9, 9)).at[1, :, :3].set(False).at[1, :3, 0].set(True)  # a padded row

  def loss_and_grads(model):
    loss = lambda p: model.apply({"params": p}, tokens, positions, mask)[0].sum()
    value, grads = jax.jit(jax.value_and_grad(loss))(to_layout(params, abstract_params(model)))
    return value, to_layout(grads, params)  # scanned layers: unstacked to compare

  reference_loss, reference_grads = loss_and_grads(base)
  for options in (
    dict(attention="xla"),
    dict(remat="full"),
    dict(remat="dots_saveable", attention="xla"),
    dict(scan_layers=True),
    dict(scan_layers=True, remat="full"),
  ):
    model = DecoderLM(dataclasses.replace(base.cfg, **options))
    loss, grads = loss_and_grads(model)
    np.testing.assert_allclose(loss, reference_loss, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("tie_embeddings", [False, True])
def test_padded_vocabulary_computes_the_unpadded_model(tie_embeddings):
  """Rows added for sharding change nothing: same real logits and loss, padded logits masked, no gradient."""
  model, params = _model("pythia", tie_embeddings=tie_embeddings)
  padded_model = DecoderLM(dataclasses.replace(model.cfg, vocab_size=40, valid_vocab=37))
  padded_params = to_layout(params, abstract_params(padded_model))
  tokens = jax.random.randint(jax.random.key(2), (3, 12), 0, 37)
  batch = {"tokens": tokens}
  logits, _ = model.apply({"params": params}, tokens, *causal_inputs(tokens))
  padded_logits, _ = padded_model.apply({"params": padded_params}, tokens, *causal_inputs(tokens))
  np.testing.assert_allclose(padded_logits[..., :37], logits, atol=1e-6)
  assert np.all(np.asarray(padded_logits[..., 37:]) == np.finfo(np.float32).min)
  grads = jax.grad(lambda p: token_losses(padded_model, p, batch).sum())(padded_params)
  np.testing.assert_allclose(
    token_losses(padded_model, padded_params, batch), token_losses(model, params, batch), atol=1e-6
  )
  np.testing.assert_array_equal(grads["embed_in"]["embedding"][37:], 0.0)
  if not tie_embeddings:
    np.testing.assert_array_equal(grads["embed_out"]["kernel"][:, 37:], 0.0)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), to_layout(padded_params, params), params)


def test_scanned_layers_decode_and_expose_residuals_as_unrolled_ones():
  model, params = _model("pythia", n_layers=3)
  scanned = DecoderLM(dataclasses.replace(model.cfg, scan_layers=True))
  boxed = jax.eval_shape(lambda: init_params(scanned, jax.random.key(0)))
  assert boxed["layers"]["mlp"]["dense_h_to_4h"]["kernel"].names == ("layers", "embed", "mlp")
  scanned_params = to_layout(params, unbox(boxed))
  assert scanned_params["layers"]["attention"]["query"]["kernel"].shape == (3, 32, 32)
  prompts = jnp.array([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]], jnp.int32)
  np.testing.assert_array_equal(
    greedy_decode(scanned, scanned_params, prompts, 6, 0), greedy_decode(model, params, prompts, 6, 0)
  )
  np.testing.assert_allclose(
    hidden_states(scanned, scanned_params, prompts), hidden_states(model, params, prompts), atol=1e-5
  )
  with pytest.raises(IMLError, match="model.scan_layers = True: expected False for a model with local_layers"):
    dataclasses.replace(model.cfg, scan_layers=True, local_layers=(1,))


@pytest.mark.parametrize(
  "overrides",
  [dict(vocab_size=40, valid_vocab=37), dict(tie_embeddings=True), dict(output_bias=True)],
  ids=["padded_vocabulary", "tied", "output_bias"],
)
def test_a_chunked_loss_equals_the_whole_loss(overrides):
  model, params = _model("pythia", **overrides)
  batch = {"tokens": jax.random.randint(jax.random.key(2), (4, 13), 0, 37)}
  weights = jax.random.uniform(jax.random.key(3), (4, 12))

  def loss_and_grads(loss_chunk):
    chunked = DecoderLM(dataclasses.replace(model.cfg, loss_chunk=loss_chunk))
    # scaled: the backward pass must scale the gradients the chunks took by its cotangent
    return jax.jit(jax.value_and_grad(lambda p: 2.5 * weighted_loss(chunked, p, batch, weights)))(params)

  whole, whole_grads = loss_and_grads(0)
  assert float(whole) == pytest.approx(2.5 * float(jnp.sum(token_losses(model, params, batch) * weights)), rel=1e-6)
  for loss_chunk in (5, 12):  # 12 positions: in 3 chunks, the last padded; in one chunk
    loss, grads = loss_and_grads(loss_chunk)
    assert float(loss) == pytest.approx(float(whole), rel=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5), grads, whole_grads)


def test_a_chunked_loss_never_holds_every_positions_logits():
  """Training step memory (XLA's temporaries for the loss and its gradients): the [B, L, V] float32 logits and
  their gradients, 4 MiB each here, exist only a chunk at a time (measured: 9.8 MiB whole, 2.7 MiB in chunks)."""
  model, params = _model("pythia", vocab_size=4096, max_len=64)
  batch, weights = {"tokens": jnp.zeros((8, 33), jnp.int32)}, jnp.ones((8, 32))

  def temporaries(loss_chunk):
    chunked = DecoderLM(dataclasses.replace(model.cfg, loss_chunk=loss_chunk))
    grads = jax.jit(jax.grad(lambda p: weighted_loss(chunked, p, batch, weights)))
    return grads.lower(params).compile().memory_analysis().temp_size_in_bytes

  logits_bytes = 8 * 32 * 4096 * 4
  assert temporaries(0) - temporaries(4) > 1.5 * logits_bytes
