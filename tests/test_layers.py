"""layers: attention implementations. Splash runs through Pallas's interpreter on CPU: the same kernel a TPU
compiles, checked against our einsum attention (values and gradients), alone and sharded over a mesh."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from iml_jax import sharding
from iml_jax.models import decoding, layers
from iml_jax.models.decoder import DecoderConfig, DecoderLM, causal_inputs, init_params


def _qkv(batch=2, length=128, heads=4, kv_heads=4, head_dim=16):
  keys = jax.random.split(jax.random.key(0), 3)
  q = jax.random.normal(keys[0], (batch, length, heads, head_dim))
  k, v = (jax.random.normal(key, (batch, length, kv_heads, head_dim)) for key in keys[1:])
  return q, k, v


def _attention_and_grads(implementation, q, k, v, window=0):
  """Output and the gradients of a weighted sum of it with respect to q, k and v."""
  weights = jax.random.normal(jax.random.key(1), q.shape[:2] + (q.shape[2] * q.shape[3],))

  def weighted(q, k, v):
    return jnp.sum(layers.attend(q, k, v, None, 0.25, implementation=implementation, window=window) * weights)

  out = jax.jit(lambda q, k, v: layers.attend(q, k, v, None, 0.25, implementation=implementation, window=window))
  return out(q, k, v), jax.jit(jax.grad(weighted, argnums=(0, 1, 2)))(q, k, v)


@pytest.mark.parametrize(
  "kv_heads, window, length",
  [
    (4, 0, 128),  # multi-head causal
    (2, 0, 128),  # grouped-query
    (4, 5, 128),  # GPT-Neo's local window
    (4, 0, 47),  # padded to Splash's block (the study's 48-token blocks give 47 inputs)
  ],
)
def test_splash_attention_equals_einsum(kv_heads, window, length):
  q, k, v = _qkv(length=length, kv_heads=kv_heads)
  reference, reference_grads = _attention_and_grads("einsum", q, k, v, window)
  out, grads = _attention_and_grads("splash", q, k, v, window)
  np.testing.assert_allclose(out, reference, atol=2e-6)
  for grad, reference_grad in zip(grads, reference_grads):
    np.testing.assert_allclose(grad, reference_grad, atol=2e-5)


def test_splash_attention_runs_per_device_under_a_mesh():
  """Under `jax.set_mesh`, each device runs the kernel on its rows (data x fsdp) and heads (tensor)."""
  assert len(jax.devices()) == 8
  q, k, v = _qkv(batch=4, kv_heads=2)
  reference = layers.attend(q, k, v, None, 0.25, implementation="einsum")
  mesh = sharding.make_mesh((2, 2, 2))
  spec = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), None, "tensor", None))
  q, k, v = (jax.device_put(x, spec) for x in (q, k, v))
  splash = jax.jit(lambda q, k, v: layers.attend(q, k, v, None, 0.25, implementation="splash"))
  with jax.set_mesh(mesh):
    out = splash(q, k, v)
    program = str(jax.make_jaxpr(splash)(q, k, v))
  assert "shard_map[" in program and "P(('data', 'fsdp'), None, 'tensor', None)" in program
  assert out.sharding.is_equivalent_to(spec, 4)
  np.testing.assert_allclose(out, reference, atol=2e-6)


@pytest.mark.parametrize(
  "backend, causal_sequence, length, head_dim, dtype, expected",
  [
    ("tpu", True, 256, 64, jnp.bfloat16, "splash"),
    ("tpu", True, 511, 64, jnp.bfloat16, "splash"),  # padded to 512
    ("tpu", True, 47, 64, jnp.bfloat16, "einsum"),  # mostly padding in Splash's smallest block
    ("tpu", False, 256, 64, jnp.bfloat16, "einsum"),  # a cached decoding step or a padded batch
    ("gpu", True, 48, 64, jnp.bfloat16, "cudnn"),
    ("gpu", True, 48, 64, jnp.float32, "einsum"),  # cuDNN's flash attention is 16-bit only
    ("gpu", True, 48, 256, jnp.bfloat16, "einsum"),  # head width above 128
    ("gpu", False, 48, 64, jnp.bfloat16, "einsum"),
    ("cpu", True, 256, 64, jnp.float32, "einsum"),
  ],
)
def test_auto_attention_is_chosen_per_backend_and_call(
  monkeypatch, backend, causal_sequence, length, head_dim, dtype, expected
):
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  assert layers.resolve_attention("auto", causal_sequence, length, head_dim, dtype) == expected


def test_explicit_choices_are_kept_and_splash_leaves_what_it_cannot_compute_to_einsum():
  assert layers.resolve_attention("xla", False, 48, 64, jnp.float32) == "xla"
  assert layers.resolve_attention("splash", True, 128, 64, jnp.float32) == "splash"
  assert layers.resolve_attention("splash", False, 128, 64, jnp.float32) == "einsum"


def test_a_splash_model_trains_and_decodes_as_the_einsum_model():
  """GPT-Neo-like (one local layer, grouped-query heads): the same logits and gradients (that the window is
  applied at all: tests/test_decoder.py); decoding (cached, masked) falls back to einsum, the same tokens."""
  config = DecoderConfig(
    vocab_size=37, d_model=32, n_heads=4, n_kv_heads=2, n_layers=2, d_mlp=64, max_len=160, attention="einsum",
    local_layers=(0,), local_window=5, position_embedding="learned", parallel_residual=False,
  )  # fmt: skip
  einsum_model = DecoderLM(config)
  splash_model = DecoderLM(dataclasses.replace(config, attention="splash"))
  params = init_params(einsum_model, jax.random.key(0))
  tokens = jax.random.randint(jax.random.key(1), (2, 128), 0, 37)

  def logits_and_grads(model):
    logits = lambda p: model.apply({"params": p}, tokens, *causal_inputs(tokens))[0]
    return jax.jit(logits)(params), jax.jit(jax.grad(lambda p: jnp.sum(logits(p) ** 2)))(params)

  (reference, reference_grads), (logits, grads) = logits_and_grads(einsum_model), logits_and_grads(splash_model)
  np.testing.assert_allclose(logits, reference, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), grads, reference_grads)
  prompts = tokens[:, :10].at[0, :3].set(36)  # a left-padded row (36 as EOS)
  np.testing.assert_array_equal(
    decoding.greedy_decode(splash_model, params, prompts, 6, 36),
    decoding.greedy_decode(einsum_model, params, prompts, 6, 36),
  )
