"""GPT-NeoX (Pythia) decoder in Flax linen, with an explicit KV cache for decoding.

Options cover Pythia (partial rotary, parallel residual) and the GPT-2-style block the CPU recipe was
measured with (learned positions, sequential residual): `position_embedding`, `parallel_residual`.
Weights follow HF GPT-NeoX layouts (fused QKV interleaved per head, untied output embedding), so HF
checkpoints map onto them by renaming. Every parameter carries logical axis names from
{vocab, embed, heads, mlp}; `sharding.py` maps them onto the mesh.

Shape suffixes: B batch, L query length, S key/cache length, D model width, H heads, K head width.
"""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from iml_jax.errors import IMLError

LayerCache = tuple[jax.Array, jax.Array]  # keys, values: [B, S, H, K] each


@dataclasses.dataclass(frozen=True)
class GPTNeoXConfig:
  vocab_size: int
  d_model: int = 64
  n_layers: int = 2
  n_heads: int = 4
  d_mlp: int = 256
  max_len: int = 64
  rotary_pct: float = 0.25
  rotary_base: float = 10000.0
  parallel_residual: bool = True
  position_embedding: str = "rotary"  # "rotary" (Pythia) or "learned" (GPT-2 style)
  layer_norm_eps: float = 1e-5
  init_std: float = 0.02
  embedding_init_std: float = 0.02
  dtype: str = "float32"  # compute dtype; parameters stay float32

  def __post_init__(self):
    if self.d_model % self.n_heads:
      raise IMLError(f"config field model.d_model = {self.d_model} must be divisible by model.n_heads = {self.n_heads}")
    if self.position_embedding not in ("rotary", "learned"):
      raise IMLError(f"config field model.position_embedding = {self.position_embedding!r}: expected 'rotary' or 'learned'")
    if self.dtype not in ("float32", "bfloat16"):
      raise IMLError(f"config field model.dtype = {self.dtype!r}: expected 'float32' or 'bfloat16'")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  @property
  def rotary_dim(self) -> int:
    return int(self.head_dim * self.rotary_pct) if self.position_embedding == "rotary" else 0


def _dense(features: int, axes: tuple[str, str], cfg: GPTNeoXConfig, name: str) -> nn.Dense:
  return nn.Dense(features, dtype=jnp.dtype(cfg.dtype), name=name,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.normal(cfg.init_std), axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]))


def _layer_norm(cfg: GPTNeoXConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.dtype(cfg.dtype), name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


def apply_rotary(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, rotary_dim: int, base: float) -> jax.Array:
  """NeoX rotary embedding on the first `rotary_dim` features of each head (rotate-half layout)."""
  if rotary_dim == 0:
    return x_BxLxHxK
  inv_freq = 1.0 / (base ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))
  angles = positions_BxL[..., None].astype(jnp.float32) * inv_freq
  angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
  rot, rest = x_BxLxHxK[..., :rotary_dim], x_BxLxHxK[..., rotary_dim:]
  half = rotary_dim // 2
  rotated = jnp.concatenate([-rot[..., half:], rot[..., :half]], axis=-1)
  out = rot.astype(jnp.float32) * jnp.cos(angles) + rotated.astype(jnp.float32) * jnp.sin(angles)
  return jnp.concatenate([out.astype(x_BxLxHxK.dtype), rest], axis=-1)


class Attention(nn.Module):
  cfg: GPTNeoXConfig

  @nn.compact
  def __call__(self, x_BxLxD, positions_BxL, mask_BxLxS, cache: LayerCache | None, cache_index):
    cfg = self.cfg
    batch, length, _ = x_BxLxD.shape
    qkv = _dense(3 * cfg.d_model, ("embed", "heads"), cfg, "query_key_value")(x_BxLxD)
    qkv = qkv.reshape(batch, length, cfg.n_heads, 3, cfg.head_dim)  # NeoX interleaves per head
    q, k, v = qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]
    q = apply_rotary(q, positions_BxL, cfg.rotary_dim, cfg.rotary_base)
    k = apply_rotary(k, positions_BxL, cfg.rotary_dim, cfg.rotary_base)
    if cache is not None:
      k = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), cache_index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), cache_index, axis=1)
      cache = (k, v)
    scores = jnp.einsum("blhk,bshk->bhls", q, k).astype(jnp.float32) / jnp.sqrt(cfg.head_dim)
    scores = jnp.where(mask_BxLxS[:, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bhls,bshk->blhk", probs, v).reshape(batch, length, cfg.d_model)
    return _dense(cfg.d_model, ("heads", "embed"), cfg, "dense")(out), cache


class MLP(nn.Module):
  cfg: GPTNeoXConfig

  @nn.compact
  def __call__(self, x_BxLxD):
    h = _dense(self.cfg.d_mlp, ("embed", "mlp"), self.cfg, "dense_h_to_4h")(x_BxLxD)
    h = nn.with_logical_constraint(nn.gelu(h, approximate=False), ("batch", "length", "mlp"))
    return _dense(self.cfg.d_model, ("mlp", "embed"), self.cfg, "dense_4h_to_h")(h)


class Block(nn.Module):
  cfg: GPTNeoXConfig

  @nn.compact
  def __call__(self, x_BxLxD, positions_BxL, mask_BxLxS, cache, cache_index):
    attn_out, cache = Attention(self.cfg, name="attention")(
        _layer_norm(self.cfg, "input_layernorm")(x_BxLxD), positions_BxL, mask_BxLxS, cache, cache_index)
    if self.cfg.parallel_residual:
      mlp_out = MLP(self.cfg, name="mlp")(_layer_norm(self.cfg, "post_attention_layernorm")(x_BxLxD))
      x_BxLxD = x_BxLxD + attn_out + mlp_out
    else:
      x_BxLxD = x_BxLxD + attn_out
      x_BxLxD = x_BxLxD + MLP(self.cfg, name="mlp")(_layer_norm(self.cfg, "post_attention_layernorm")(x_BxLxD))
    return nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed")), cache


class GPTNeoX(nn.Module):
  """`__call__(tokens, positions, mask, cache, cache_index) -> (logits, cache)`.

  mask_BxLxS[b, i, j] says whether query i may attend key j; `cache` is None (training) or one
  (keys, values) pair per layer that the call writes at `cache_index` and returns updated.
  """
  cfg: GPTNeoXConfig

  def setup(self):
    cfg = self.cfg
    init = nn.initializers.normal(cfg.init_std)
    embedding_init = nn.initializers.normal(cfg.embedding_init_std)
    self.embed_in = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype),
                             embedding_init=nn.with_logical_partitioning(embedding_init, ("vocab", "embed")))
    if cfg.position_embedding == "learned":
      self.embed_positions = nn.Embed(cfg.max_len, cfg.d_model, dtype=jnp.dtype(cfg.dtype),
                                      embedding_init=nn.with_logical_partitioning(embedding_init, (None, "embed")))
    self.layers = [Block(cfg, name=f"layers_{i}") for i in range(cfg.n_layers)]
    self.final_layer_norm = _layer_norm(cfg, "final_layer_norm")
    self.embed_out = nn.Dense(cfg.vocab_size, use_bias=False, dtype=jnp.dtype(cfg.dtype),
                              kernel_init=nn.with_logical_partitioning(init, ("embed", "vocab")))

  def embed(self, tokens_BxL):
    return self.embed_in(tokens_BxL)

  def from_embeddings(self, x_BxLxD, positions_BxL, mask_BxLxS, cache=None, cache_index=0):
    if self.cfg.position_embedding == "learned":
      x_BxLxD = x_BxLxD + self.embed_positions(positions_BxL)
    new_cache = []
    for i, layer in enumerate(self.layers):
      x_BxLxD, layer_cache = layer(x_BxLxD, positions_BxL, mask_BxLxS,
                                   None if cache is None else cache[i], cache_index)
      new_cache.append(layer_cache)
    logits = self.embed_out(self.final_layer_norm(x_BxLxD)).astype(jnp.float32)
    return logits, (None if cache is None else tuple(new_cache))

  def __call__(self, tokens_BxL, positions_BxL, mask_BxLxS, cache=None, cache_index=0):
    return self.from_embeddings(self.embed(tokens_BxL), positions_BxL, mask_BxLxS, cache, cache_index)

  def init_cache(self, batch: int, length: int) -> tuple[LayerCache, ...]:
    shape = (batch, length, self.cfg.n_heads, self.cfg.head_dim)
    zeros = jnp.zeros(shape, jnp.dtype(self.cfg.dtype))
    return tuple((zeros, zeros) for _ in range(self.cfg.n_layers))


def causal_inputs(tokens_BxL: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Positions and causal mask for right-padded training sequences."""
  batch, length = tokens_BxL.shape
  positions = jnp.broadcast_to(jnp.arange(length), (batch, length))
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (batch, length, length))
  return positions, mask


def init_params(model: GPTNeoX, rng: jax.Array, length: int = 8) -> Any:
  tokens = jnp.zeros((1, length), jnp.int32)
  return model.init(rng, tokens, *causal_inputs(tokens))["params"]
