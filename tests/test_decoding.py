import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iml_jax.models import t5
from iml_jax.models.decoding import greedy_decode, greedy_decode_seq2seq
from iml_jax.models.decoder import DecoderConfig, DecoderLM, causal_inputs, init_params
from iml_jax.models.t5 import T5, T5Config
from iml_jax.train import unbox

EOS = 0


def _no_cache_greedy(forward, prompt, steps):
  """Reference: re-run the whole unpadded sequence for every new token, stop at EOS. The sequence is
  right-filled to one fixed width (causality keeps the filler out), so `forward` compiles once."""
  width = 32
  tokens = list(prompt)
  out = []
  for _ in range(steps):
    logits = forward(jnp.array([tokens + [EOS] * (width - len(tokens))]))
    token = int(jnp.argmax(logits[0, len(tokens) - 1]))
    out.append(token)
    if token == EOS:
      break
    tokens.append(token)
  return out + [EOS] * (steps - len(out))


VARIANTS = {
  "neox": dict(position_embedding="rotary", parallel_residual=True),
  "gpt2": dict(position_embedding="learned", parallel_residual=False, tie_embeddings=True),
  "gpt_neo_local_window_3": dict(
    position_embedding="learned", parallel_residual=False, local_layers=(1,), local_window=3, scale_attention=False
  ),
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


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_greedy_equals_no_cache_loop(variant):
  cfg = DecoderConfig(
    vocab_size=23,
    d_model=32,
    n_layers=2,
    n_heads=4,
    d_mlp=64,
    max_len=32,
    init_std=0.4,
    embedding_init_std=0.4,
    **VARIANTS[variant],
  )
  model = DecoderLM(cfg)
  params = unbox(init_params(model, jax.random.key(3)))
  rng = np.random.default_rng(0)
  prompts = [rng.integers(1, 23, size=n).tolist() for n in (1, 4, 7, 7, 2, 5, 3, 6)]
  width = 8
  batch = np.full((len(prompts), width), EOS, np.int32)
  for row, prompt in zip(batch, prompts):
    row[width - len(prompt) :] = prompt  # left padding
  generated = np.asarray(greedy_decode(model, params, jnp.asarray(batch), 10, EOS))
  forward = jax.jit(lambda x: model.apply({"params": params}, x, *causal_inputs(x))[0])
  for row, prompt in zip(generated, prompts):
    assert row.tolist() == _no_cache_greedy(forward, prompt, 10)


def test_a_row_that_emits_eos_stays_eos():
  cfg = DecoderConfig(vocab_size=5, d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=16)
  model = DecoderLM(cfg)
  params = unbox(init_params(model, jax.random.key(0)))
  # Final hidden state = ones and only the EOS column of the output layer is non-zero: EOS always wins.
  params["final_layer_norm"]["scale"] = jnp.zeros_like(params["final_layer_norm"]["scale"])
  params["final_layer_norm"]["bias"] = jnp.ones_like(params["final_layer_norm"]["bias"])
  params["embed_out"]["kernel"] = jnp.zeros_like(params["embed_out"]["kernel"]).at[:, EOS].set(1.0)
  out = greedy_decode(model, params, jnp.ones((3, 4), jnp.int32), 6, EOS)
  assert out.shape == (3, 6) and bool((out == EOS).all())
  params["embed_out"]["kernel"] = jnp.zeros_like(params["embed_out"]["kernel"]).at[:, 3].set(1.0)
  assert bool((greedy_decode(model, params, jnp.ones((3, 4), jnp.int32), 6, EOS) == 3).all())


def test_seq2seq_cached_greedy_equals_no_cache_loop():
  cfg = T5Config(
    vocab_size=23,
    d_model=32,
    d_kv=8,
    d_ff=48,
    n_heads=4,
    n_layers=2,
    relative_buckets=8,
    relative_max_distance=16,
    init_std=0.3,
  )
  model = T5(cfg)
  params = unbox(t5.init_params(model, jax.random.key(4)))
  rng = np.random.default_rng(1)
  lengths = (1, 3, 6, 4)
  inputs = np.zeros((len(lengths), 6), np.int32)
  for row, n in zip(inputs, lengths):
    row[:n] = rng.integers(1, 23, size=n)  # right padding
  mask = np.arange(6)[None, :] < np.array(lengths)[:, None]
  generated = np.asarray(greedy_decode_seq2seq(model, params, jnp.asarray(inputs), jnp.asarray(mask), 8, EOS))
  forward = jax.jit(lambda x, y: model.apply({"params": params}, x, jnp.ones(x.shape, bool), y))
  for row, source, n in zip(generated, inputs, lengths):
    decoded = [cfg.decoder_start_id]
    for _ in range(8):  # reference: the unpadded input and the whole decoder prefix every step, no cache
      prefix = decoded + [EOS] * (9 - len(decoded))  # one width: the causal decoder ignores the filler
      logits = forward(jnp.asarray(source[None, :n]), jnp.asarray([prefix]))
      decoded.append(int(jnp.argmax(logits[0, len(decoded) - 1])))
      if decoded[-1] == EOS:
        break
    expected = decoded[1:] + [EOS] * (9 - len(decoded))
    assert row.tolist() == expected
