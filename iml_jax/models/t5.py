"""T5 v1.0 / v1.1 encoder–decoder in Flax linen: relative position buckets, RMS layer norms, ReLU or
gated-GELU MLPs, tied or untied output head, with or without v1.0's output scaling. Decoding encodes once and caches the
cross-attention keys/values next to the self-attention cache.

Shape suffixes: B batch, I input length, L decoder query length, S decoder key/cache length,
D model width, H heads, K head width.
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from iml_jax.errors import IMLError
from iml_jax.models import decoding, layers


@dataclasses.dataclass(frozen=True)
class T5Config:
  vocab_size: int
  d_model: int = 64
  d_kv: int = 16
  d_ff: int = 256
  n_heads: int = 4
  n_layers: int = 2
  n_decoder_layers: int = 0  # 0: as many as the encoder
  relative_buckets: int = 32
  relative_max_distance: int = 128
  layer_norm_eps: float = 1e-6
  activation: str = "relu"  # v1.0; v1.1 is gated "gelu_new"
  gated_mlp: bool = False
  tie_embeddings: bool = True  # v1.0: the head is the shared embedding; v1.1 has its own lm_head
  scale_decoder_outputs: bool = True  # v1.0: decoder output × d_model^-0.5 before the head
  decoder_start_id: int = 0
  max_len: int = 64
  init_std: float = 0.05
  embedding_init_std: float = 1.0
  dtype: str = "float32"
  valid_vocab: int = 0  # as DecoderConfig.valid_vocab

  def __post_init__(self):
    if self.activation not in layers.ACTIVATIONS:
      raise IMLError(
        f"config field model.activation = {self.activation!r}: expected one of {tuple(layers.ACTIVATIONS)}"
      )
    layers.check_compute_dtype(self.dtype)
    if min(self.d_model, self.d_kv, self.d_ff, self.n_heads, self.n_layers, self.relative_buckets) < 1:
      raise IMLError("config fields model.d_model, d_kv, d_ff, n_heads, n_layers, relative_buckets must be >= 1")

  @property
  def decoder_layers(self) -> int:
    return self.n_decoder_layers or self.n_layers


def relative_position_bucket(relative_position_LxS, bidirectional: bool, num_buckets: int, max_distance: int):
  """Mesh-TensorFlow's bucketing of (key − query) distances: exact when small, logarithmic up to max_distance."""
  buckets_LxS = 0
  if bidirectional:
    num_buckets //= 2
    buckets_LxS = (relative_position_LxS > 0).astype(jnp.int32) * num_buckets
    distance_LxS = jnp.abs(relative_position_LxS)
  else:
    distance_LxS = -jnp.minimum(relative_position_LxS, 0)
  max_exact = num_buckets // 2
  is_small_LxS = distance_LxS < max_exact
  large_LxS = max_exact + (
    jnp.log(jnp.maximum(distance_LxS, 1).astype(jnp.float32) / max_exact)
    / math.log(max_distance / max_exact)
    * (num_buckets - max_exact)
  ).astype(jnp.int32)
  large_LxS = jnp.minimum(large_LxS, num_buckets - 1)
  return buckets_LxS + jnp.where(is_small_LxS, distance_LxS, large_LxS)


class Attention(nn.Module):
  cfg: T5Config

  def setup(self):
    cfg, inner = self.cfg, self.cfg.n_heads * self.cfg.d_kv
    proj = lambda name: layers.dense(inner, ("embed", "heads"), cfg.init_std, cfg.dtype, name, use_bias=False)
    self.q, self.k, self.v = proj("q"), proj("k"), proj("v")
    self.o = layers.dense(cfg.d_model, ("heads", "embed"), cfg.init_std, cfg.dtype, "o", use_bias=False)

  def _heads(self, x_BxLxF):
    """[B, L, heads * d_kv] -> [B, L, heads, d_kv]."""
    return x_BxLxF.reshape(x_BxLxF.shape[:2] + (self.cfg.n_heads, self.cfg.d_kv))

  def keys_values(self, x_BxSxD):
    return self._heads(self.k(x_BxSxD)), self._heads(self.v(x_BxSxD))

  def __call__(self, x_BxLxD, keys_values, mask_BxLxS, bias_BxHxLxS):
    out = layers.attend(self._heads(self.q(x_BxLxD)), *keys_values, mask_BxLxS, 1.0, bias_BxHxLxS)
    return self.o(out)


class Layer(nn.Module):
  cfg: T5Config
  is_decoder: bool

  def setup(self):
    cfg = self.cfg
    norm = lambda name: layers.norm("rmsnorm", cfg.layer_norm_eps, cfg.dtype, name)
    self.self_attention_norm, self.self_attention = norm("self_attention_norm"), Attention(cfg)
    if self.is_decoder:
      self.cross_attention_norm, self.cross_attention = norm("cross_attention_norm"), Attention(cfg)
    self.mlp_norm = norm("mlp_norm")
    self.mlp = layers.MLP(
      cfg.d_ff, cfg.activation, cfg.gated_mlp, False, cfg.init_std, cfg.dtype, names=("wi", "gate", "wo")
    )

  def cross_keys_values(self, encoded_BxIxD):
    return self.cross_attention.keys_values(encoded_BxIxD)

  def __call__(
    self, x_BxLxD, mask_BxLxS, bias_1xHxLxS, self_cache=None, cache_index=0, cross_kv=None, cross_mask_Bx1xI=None
  ):
    h_BxLxD = self.self_attention_norm(x_BxLxD)
    k_BxSxHxK, v_BxSxHxK, self_cache = layers.write_cache(
      self_cache, *self.self_attention.keys_values(h_BxLxD), cache_index
    )
    x_BxLxD = x_BxLxD + self.self_attention(h_BxLxD, (k_BxSxHxK, v_BxSxHxK), mask_BxLxS, bias_1xHxLxS)
    if self.is_decoder:
      x_BxLxD = x_BxLxD + self.cross_attention(self.cross_attention_norm(x_BxLxD), cross_kv, cross_mask_Bx1xI, None)
    x_BxLxD = x_BxLxD + self.mlp(self.mlp_norm(x_BxLxD))
    return nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed")), self_cache


class Stack(nn.Module):
  """The encoder (bidirectional) or decoder (causal, with cross-attention) stack."""

  cfg: T5Config
  is_decoder: bool

  def setup(self):
    cfg = self.cfg
    n = cfg.decoder_layers if self.is_decoder else cfg.n_layers
    self.layers = [Layer(cfg, self.is_decoder, name=f"layers_{i}") for i in range(n)]
    self.relative_attention_bias = layers.embedding(
      cfg.relative_buckets, cfg.n_heads, cfg.init_std, cfg.dtype, axes=(None, "heads")
    )
    self.final_layer_norm = layers.norm("rmsnorm", cfg.layer_norm_eps, cfg.dtype, "final_layer_norm")

  def position_bias(self, query_positions_L, key_positions_S):
    """[1, heads, L, S]: the learned bias of each head for each (query, key) distance bucket."""
    buckets_LxS = relative_position_bucket(
      key_positions_S[None, :] - query_positions_L[:, None],
      not self.is_decoder,
      self.cfg.relative_buckets,
      self.cfg.relative_max_distance,
    )
    return jnp.transpose(self.relative_attention_bias(buckets_LxS), (2, 0, 1))[None].astype(jnp.float32)

  def cross_keys_values(self, encoded_BxIxD):
    return tuple(layer.cross_keys_values(encoded_BxIxD) for layer in self.layers)

  def __call__(
    self,
    x_BxLxD,
    mask_BxLxS,
    query_positions_L,
    key_positions_S,
    caches=None,
    cache_index=0,
    cross_kvs=None,
    cross_mask_Bx1xI=None,
  ):
    bias_1xHxLxS = self.position_bias(query_positions_L, key_positions_S)
    new_caches = []
    for i, layer in enumerate(self.layers):
      x_BxLxD, cache = layer(
        x_BxLxD,
        mask_BxLxS,
        bias_1xHxLxS,
        None if caches is None else caches[i],
        cache_index,
        None if cross_kvs is None else cross_kvs[i],
        cross_mask_Bx1xI,
      )
      self.sow("intermediates", "residual", x_BxLxD)  # the residual stream after each block, for probes
      new_caches.append(cache)
    return self.final_layer_norm(x_BxLxD), tuple(new_caches)


class T5(nn.Module):
  """`__call__(inputs, input_mask, decoder_inputs) -> logits` for teacher forcing; `encode` +
  `init_cache` + `decode` for cached generation."""

  cfg: T5Config

  def setup(self):
    cfg = self.cfg
    self.shared = layers.embedding(
      cfg.vocab_size, cfg.d_model, cfg.embedding_init_std, cfg.dtype, valid_vocab=cfg.valid_vocab
    )
    self.encoder = Stack(cfg, is_decoder=False)
    self.decoder = Stack(cfg, is_decoder=True)
    if not cfg.tie_embeddings:
      self.lm_head = layers.dense(
        cfg.vocab_size,
        ("embed", "vocab"),
        cfg.init_std,
        cfg.dtype,
        "lm_head",
        use_bias=False,
        valid_vocab=cfg.valid_vocab,
      )

  def encode(self, inputs_BxI, input_mask_BxI):
    positions_I = jnp.arange(inputs_BxI.shape[1])
    mask_BxIxI = jnp.broadcast_to(input_mask_BxI[:, None, :], inputs_BxI.shape + inputs_BxI.shape[1:])
    return self.encoder(self.shared(inputs_BxI), mask_BxIxI, positions_I, positions_I)[0]

  def _logits(self, x_BxLxD):
    if self.cfg.scale_decoder_outputs:
      x_BxLxD = x_BxLxD * self.cfg.d_model**-0.5
    head = self.shared.attend if self.cfg.tie_embeddings else self.lm_head
    return layers.real_vocab_logits(head(x_BxLxD), self.cfg.valid_vocab)

  def decode(self, tokens_BxL, input_mask_BxI, cache, cache_index):
    """One cached step (or several): `cache` = (self-attention caches, cross-attention keys/values)."""
    self_caches, cross_kvs = cache
    length, cache_len = tokens_BxL.shape[1], self_caches[0][0].shape[1]
    query_positions_L = cache_index + jnp.arange(length)
    key_positions_S = jnp.arange(cache_len)
    causal_LxS = key_positions_S[None, :] <= query_positions_L[:, None]
    batch = tokens_BxL.shape[0]
    x_BxLxD, self_caches = self.decoder(
      self.shared(tokens_BxL),
      jnp.broadcast_to(causal_LxS, (batch, length, cache_len)),
      query_positions_L,
      key_positions_S,
      self_caches,
      cache_index,
      cross_kvs,
      input_mask_BxI[:, None, :],
    )
    return self._logits(x_BxLxD), (self_caches, cross_kvs)

  def init_cache(self, encoded_BxIxD, length: int):
    batch = encoded_BxIxD.shape[0]
    zeros_BxSxHxK = jnp.zeros((batch, length, self.cfg.n_heads, self.cfg.d_kv), jnp.dtype(self.cfg.dtype))
    self_caches = tuple((zeros_BxSxHxK, zeros_BxSxHxK) for _ in range(self.cfg.decoder_layers))
    return self_caches, self.decoder.cross_keys_values(encoded_BxIxD)

  def __call__(self, inputs_BxI, input_mask_BxI, decoder_inputs_BxL):
    encoded_BxIxD = self.encode(inputs_BxI, input_mask_BxI)
    length = decoder_inputs_BxL.shape[1]
    positions_L = jnp.arange(length)
    causal_BxLxL = jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (inputs_BxI.shape[0], length, length))
    x_BxLxD, _ = self.decoder(
      self.shared(decoder_inputs_BxL),
      causal_BxLxL,
      positions_L,
      positions_L,
      cross_kvs=self.decoder.cross_keys_values(encoded_BxIxD),
      cross_mask_Bx1xI=input_mask_BxI[:, None, :],
    )
    return self._logits(x_BxLxD)


def shift_right(targets_BxL: jax.Array, start_id: int) -> jax.Array:
  return jnp.concatenate([jnp.full_like(targets_BxL[:, :1], start_id), targets_BxL[:, :-1]], axis=1)


def init_params(model: T5, rng: jax.Array, length: int = 8) -> Any:
  tokens = jnp.zeros((1, length), jnp.int32)
  return model.init(rng, tokens, jnp.ones((1, length), bool), tokens)["params"]


def token_losses(model: T5, params, batch: dict) -> jax.Array:
  """Cross-entropy at every target position [B, T] (fp32), teacher-forced from the shifted targets."""
  decoder_inputs = shift_right(batch["targets"], model.cfg.decoder_start_id)
  logits = model.apply({"params": params}, batch["inputs"], batch["input_mask"], decoder_inputs)
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])


def generate(
  model: T5, params, inputs_BxI: jax.Array, input_mask_BxI: jax.Array, max_new_tokens: int, eos_id: int
) -> jax.Array:
  """Greedy outputs [B, max_new_tokens] for right-padded inputs and their mask."""
  return decoding.greedy_decode_seq2seq(model, params, inputs_BxI, input_mask_BxI, max_new_tokens, eos_id)


def hidden_states(model: T5, params, tokens_BxT: jax.Array) -> jax.Array:
  """[layers, B, T, D]: the encoder's residual stream after every block while it reads `tokens_BxT` (all valid)."""
  _, state = model.apply(
    {"params": params}, tokens_BxT, jnp.ones(tokens_BxT.shape, bool), method=model.encode, mutable=["intermediates"]
  )
  return jnp.stack(state["intermediates"]["encoder"]["residual"])
