"""Greedy decoding with a KV cache inside one jitted on-device loop.

Prompts are left-padded; positions count only real tokens, so a padded prompt decodes exactly as it
would alone. The loop stops when every row has emitted `eos_id` or after `max_new_tokens`.
"""
import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "eos_id"))
def greedy_decode(model, params, prompts_BxP: jax.Array, max_new_tokens: int, eos_id: int) -> jax.Array:
  """Generated tokens [B, max_new_tokens]; after a row's EOS the rest of the row is EOS."""
  batch, prompt_len = prompts_BxP.shape
  total = prompt_len + max_new_tokens
  valid_BxP = prompts_BxP != eos_id
  # A prompt made only of padding still needs one valid slot to attend to.
  valid_BxP = valid_BxP.at[:, -1].set(True)
  positions_BxP = jnp.maximum(jnp.cumsum(valid_BxP, axis=1) - 1, 0)
  key_valid_BxS = jnp.concatenate([valid_BxP, jnp.zeros((batch, max_new_tokens), bool)], axis=1)
  causal = jnp.arange(total)[None, :] <= jnp.arange(prompt_len)[:, None]
  cache = model.init_cache(batch, total)
  logits, cache = model.apply({"params": params}, prompts_BxP, positions_BxP,
                              causal[None] & key_valid_BxS[:, None, :], cache, 0)
  first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
  out = jnp.full((batch, max_new_tokens), eos_id, jnp.int32).at[:, 0].set(first)
  next_position = positions_BxP[:, -1] + 1

  def cond(state):
    step, _, _, done, _ = state
    return (step < max_new_tokens) & ~jnp.all(done)

  def body(state):
    step, out, cache, done, key_valid = state
    token = out[:, step - 1]
    key_valid = key_valid.at[:, prompt_len + step - 1].set(True)
    logits, cache = model.apply({"params": params}, token[:, None], (next_position + step - 1)[:, None],
                                key_valid[:, None, :], cache, prompt_len + step - 1)
    new = jnp.where(done, eos_id, jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32))
    out = out.at[:, step].set(new)
    return step + 1, out, cache, done | (new == eos_id), key_valid

  state = (jnp.int32(1), out, cache, first == eos_id, key_valid_BxS)
  _, out, _, _, _ = jax.lax.while_loop(cond, body, state)
  return out
