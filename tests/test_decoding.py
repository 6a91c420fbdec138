import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iml_jax.models.decoding import greedy_decode
from iml_jax.models.gpt_neox import GPTNeoX, GPTNeoXConfig, causal_inputs, init_params
from iml_jax.train import unbox

EOS = 0


def _no_cache_greedy(model, params, prompt, steps):
  """Reference: re-run the whole unpadded sequence for every new token, stop at EOS."""
  tokens = list(prompt)
  out = []
  for _ in range(steps):
    x = jnp.array([tokens])
    logits, _ = model.apply({"params": params}, x, *causal_inputs(x))
    token = int(jnp.argmax(logits[0, -1]))
    out.append(token)
    if token == EOS:
      break
    tokens.append(token)
  return out + [EOS] * (steps - len(out))


@pytest.mark.parametrize("position_embedding, parallel", [("rotary", True), ("learned", False)])
def test_cached_greedy_equals_no_cache_loop(position_embedding, parallel):
  cfg = GPTNeoXConfig(vocab_size=23, d_model=32, n_layers=2, n_heads=4, d_mlp=64, max_len=32, init_std=0.4,
                      embedding_init_std=0.4, position_embedding=position_embedding, parallel_residual=parallel)
  model = GPTNeoX(cfg)
  params = unbox(init_params(model, jax.random.key(3)))
  rng = np.random.default_rng(0)
  prompts = [rng.integers(1, 23, size=n).tolist() for n in (1, 4, 7, 7, 2, 5, 3, 6)]
  width = 8
  batch = np.full((len(prompts), width), EOS, np.int32)
  for row, prompt in zip(batch, prompts):
    row[width - len(prompt):] = prompt  # left padding
  generated = np.asarray(greedy_decode(model, params, jnp.asarray(batch), 10, EOS))
  for row, prompt in zip(generated, prompts):
    assert row.tolist() == _no_cache_greedy(model, params, prompt, 10)


def test_a_row_that_emits_eos_stays_eos():
  cfg = GPTNeoXConfig(vocab_size=5, d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=16)
  model = GPTNeoX(cfg)
  params = unbox(init_params(model, jax.random.key(0)))
  # Final hidden state = ones and only the EOS column of the output layer is non-zero: EOS always wins.
  params["final_layer_norm"]["scale"] = jnp.zeros_like(params["final_layer_norm"]["scale"])
  params["final_layer_norm"]["bias"] = jnp.ones_like(params["final_layer_norm"]["bias"])
  params["embed_out"]["kernel"] = jnp.zeros_like(params["embed_out"]["kernel"]).at[:, EOS].set(1.0)
  out = greedy_decode(model, params, jnp.ones((3, 4), jnp.int32), 6, EOS)
  assert out.shape == (3, 6) and bool((out == EOS).all())
  params["embed_out"]["kernel"] = jnp.zeros_like(params["embed_out"]["kernel"]).at[:, 3].set(1.0)
  assert bool((greedy_decode(model, params, jnp.ones((3, 4), jnp.int32), 6, EOS) == 3).all())
