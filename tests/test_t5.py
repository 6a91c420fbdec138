import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iml_jax.errors import IMLError
from iml_jax.models import t5
from iml_jax.train import unbox


def _model(**overrides):
  cfg = t5.T5Config(
    vocab_size=29,
    d_model=32,
    d_kv=8,
    d_ff=48,
    n_heads=4,
    n_layers=2,
    relative_buckets=8,
    relative_max_distance=16,
    init_std=0.3,
    **overrides,
  )
  model = t5.T5(cfg)
  return model, unbox(t5.init_params(model, jax.random.key(0)))


def test_relative_position_buckets():
  distance = jnp.arange(-20, 21)
  bidirectional = t5.relative_position_bucket(distance, True, 8, 16)
  # 4 buckets per direction: 0, 1 exact, then log-spaced up to 16; keys after the query use 4..7.
  assert bidirectional[20].tolist() == 0 and bidirectional[21].tolist() == 5 and bidirectional[19].tolist() == 1
  assert bidirectional[:5].tolist() == [3] * 5 and bidirectional[-5:].tolist() == [7] * 5
  causal = t5.relative_position_bucket(distance, False, 8, 16)
  assert (causal[20:] == 0).all()  # future keys share bucket 0 (masked anyway)
  assert causal[20 - 3].tolist() == 3 and causal[0].tolist() == 7


def test_padding_does_not_change_the_logits():
  model, params = _model(gated_mlp=True, activation="gelu_new", tie_embeddings=False, scale_decoder_outputs=False)
  inputs = jax.random.randint(jax.random.key(1), (1, 5), 2, 29)
  decoder_inputs = jax.random.randint(jax.random.key(2), (1, 4), 2, 29)
  alone = model.apply({"params": params}, inputs, jnp.ones((1, 5), bool), decoder_inputs)
  padded_inputs = jnp.concatenate([inputs, jnp.zeros((1, 3), jnp.int32)], axis=1)
  padded_mask = jnp.arange(8)[None] < 5
  padded = model.apply({"params": params}, padded_inputs, padded_mask, decoder_inputs)
  # the softmax over 3 more (masked) keys sums in another order: 1.07e-5 apart on some CPUs; a leak is far more
  np.testing.assert_allclose(padded, alone, atol=3e-5)


def test_decoder_is_causal():
  model, params = _model()
  inputs = jax.random.randint(jax.random.key(1), (2, 5), 2, 29)
  decoder_inputs = jax.random.randint(jax.random.key(2), (2, 6), 2, 29)
  base = model.apply({"params": params}, inputs, jnp.ones((2, 5), bool), decoder_inputs)
  changed = model.apply({"params": params}, inputs, jnp.ones((2, 5), bool), decoder_inputs.at[:, 4:].set(1))
  np.testing.assert_allclose(changed[:, :4], base[:, :4], atol=1e-6)
  assert not np.allclose(changed[:, 4:], base[:, 4:])


def test_invalid_config_names_the_field():
  with pytest.raises(IMLError, match="model.activation = 'swish'"):
    t5.T5Config(vocab_size=10, activation="swish")
