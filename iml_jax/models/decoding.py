"""Greedy decoding with a KV cache inside one jitted on-device loop, for decoder-only and T5 models.

Decoder-only prompts are left-padded; positions count only real tokens, so a padded prompt decodes
exactly as it would alone. T5 encodes once and caches the cross-attention keys/values. The loop
stops when every row has emitted `eos_id` or after `max_new_tokens`.
"""

import functools

import jax
import jax.numpy as jnp


def _greedy_loop(step_fn, first_logits_BxV, cache, max_new_tokens: int, eos_id: int) -> jax.Array:
  """Runs `step_fn(step, token_B, cache) -> (logits_BxV, cache)`; after a row's EOS the row is EOS."""
  batch = first_logits_BxV.shape[0]
  first = jnp.argmax(first_logits_BxV, axis=-1).astype(jnp.int32)
  out = jnp.full((batch, max_new_tokens), eos_id, jnp.int32).at[:, 0].set(first)

  def cond(state):
    step, _, _, done = state
    return (step < max_new_tokens) & ~jnp.all(done)

  def body(state):
    step, out, cache, done = state
    logits, cache = step_fn(step, out[:, step - 1], cache)
    new = jnp.where(done, eos_id, jnp.argmax(logits, axis=-1).astype(jnp.int32))
    return step + 1, out.at[:, step].set(new), cache, done | (new == eos_id)

  _, out, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(1), out, cache, first == eos_id))
  return out


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "eos_id"))
def greedy_decode(model, params, prompts_BxP: jax.Array, max_new_tokens: int, eos_id: int) -> jax.Array:
  """Generated tokens [B, max_new_tokens] of a decoder-only model after left-padded prompts."""
  batch, prompt_len = prompts_BxP.shape
  total = prompt_len + max_new_tokens
  valid_BxP = prompts_BxP != eos_id
  # A prompt made only of padding still needs one valid slot to attend to.
  valid_BxP = valid_BxP.at[:, -1].set(True)
  positions_BxP = jnp.maximum(jnp.cumsum(valid_BxP, axis=1) - 1, 0)
  key_valid_BxS = jnp.concatenate([valid_BxP, jnp.zeros((batch, max_new_tokens), bool)], axis=1)
  causal = jnp.arange(total)[None, :] <= jnp.arange(prompt_len)[:, None]
  logits, cache = model.apply(
    {"params": params},
    prompts_BxP,
    positions_BxP,
    causal[None] & key_valid_BxS[:, None, :],
    model.init_cache(batch, total),
    0,
    last_only=True,
  )
  next_position = positions_BxP[:, -1] + 1

  def step_fn(step, token_B, state):
    cache, key_valid = state
    slot = prompt_len + step - 1
    key_valid = key_valid.at[:, slot].set(True)
    logits, cache = model.apply(
      {"params": params}, token_B[:, None], (next_position + step - 1)[:, None], key_valid[:, None, :], cache, slot
    )
    return logits[:, -1], (cache, key_valid)

  return _greedy_loop(step_fn, logits[:, -1], (cache, key_valid_BxS), max_new_tokens, eos_id)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "eos_id"))
def greedy_decode_seq2seq(
  model, params, inputs_BxI: jax.Array, input_mask_BxI: jax.Array, max_new_tokens: int, eos_id: int
) -> jax.Array:
  """Generated tokens [B, max_new_tokens] of an encoder–decoder, starting from its decoder start token."""
  variables = {"params": params}
  encoded = model.apply(variables, inputs_BxI, input_mask_BxI, method=model.encode)
  cache = model.apply(variables, encoded, max_new_tokens, method=model.init_cache)
  start = jnp.full((inputs_BxI.shape[0], 1), model.cfg.decoder_start_id, jnp.int32)
  logits, cache = model.apply(variables, start, input_mask_BxI, cache, 0, method=model.decode)

  def step_fn(step, token_B, cache):
    logits, cache = model.apply(variables, token_B[:, None], input_mask_BxI, cache, step, method=model.decode)
    return logits[:, -1], cache

  return _greedy_loop(step_fn, logits[:, -1], cache, max_new_tokens, eos_id)
