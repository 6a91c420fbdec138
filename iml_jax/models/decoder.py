"""Decoder-only language model covering GPT-NeoX (Pythia), GPT-2, GPT-Neo, GPT-J and Llama, with a KV cache.

The families differ only in options of one block, so they share it: rotary (partial or full) or
learned positions, parallel or sequential residual (GPT-J: one norm feeding both branches), LayerNorm or
RMSNorm, GELU / tanh-GELU / SwiGLU MLPs, grouped-query attention, GPT-Neo's unscaled scores and local
(windowed) layers, tied or untied output embedding (GPT-J's with a bias). `hf_import.py` maps each family's
checkpoints onto these parameters by renaming.

Shape suffixes: B batch, L query length, S key/cache length, D model width, H heads, K head width.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from iml_jax.errors import IMLError
from iml_jax.models import decoding, layers

LayerCache = tuple[jax.Array, jax.Array]  # keys, values: [B, S, G, K] each


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  vocab_size: int
  family: str = "gpt_neox"  # which Hugging Face family the weights export to
  d_model: int = 64
  n_layers: int = 2
  n_heads: int = 4
  n_kv_heads: int = 0  # 0: as many as query heads; fewer: grouped-query attention (Llama)
  d_mlp: int = 256
  max_len: int = 64
  position_embedding: str = "rotary"  # "rotary" (NeoX, Llama) or "learned" (GPT-2, GPT-Neo)
  rotary_pct: float = 0.25
  rotary_base: float = 10000.0
  parallel_residual: bool = True
  shared_input_norm: bool = False  # GPT-J: the attention's input norm also feeds the (parallel) MLP
  norm: str = "layernorm"
  layer_norm_eps: float = 1e-5
  activation: str = "gelu"
  gated_mlp: bool = False
  qkv_bias: bool = True
  proj_bias: bool = True  # attention output and MLP projections
  attention_out_bias: bool | None = None  # None: as proj_bias (GPT-J: none here, MLP biases kept)
  scale_attention: bool = True  # False: GPT-Neo's unscaled q·k
  local_layers: tuple[int, ...] = ()  # layers that attend only to the last `local_window` positions
  local_window: int = 256
  tie_embeddings: bool = False
  output_bias: bool = False  # a bias on the untied output projection (GPT-J's lm_head)
  attention: str = "auto"  # layers.ATTENTION_IMPLEMENTATIONS
  remat: str = "none"  # recompute each block's activations in the backward pass: layers.REMAT_POLICIES
  # > 0: the training loss projects and scores this many positions of each sequence at a time, their gradients
  # taken at once (weighted_loss), so the [B, L, vocab] float32 logits never exist whole; 0: all positions at once
  loss_chunk: int = 0
  scan_layers: bool = False  # one block traced once and scanned (fast compiles); parameters stacked on "layers"
  init_std: float = 0.02
  embedding_init_std: float = 0.02
  dtype: str = "float32"  # compute dtype; parameters stay float32
  valid_vocab: int = 0  # rows >= valid_vocab pad the vocabulary for sharding; their logits are left out (0: none)

  def __post_init__(self):
    object.__setattr__(self, "local_layers", tuple(self.local_layers))  # hashable, as jit's static model

    def fail(field, expected):
      raise IMLError(f"config field model.{field} = {getattr(self, field)!r}: expected {expected}")

    if self.d_model % self.n_heads:
      raise IMLError(f"config field model.d_model = {self.d_model} must be divisible by model.n_heads = {self.n_heads}")
    if self.n_kv_heads and self.n_heads % self.n_kv_heads:
      fail("n_kv_heads", f"0 or a divisor of model.n_heads = {self.n_heads}")
    if self.position_embedding not in ("rotary", "learned"):
      fail("position_embedding", "'rotary' or 'learned'")
    if self.norm not in layers.NORMS:
      fail("norm", f"one of {layers.NORMS}")
    if self.activation not in layers.ACTIVATIONS:
      fail("activation", f"one of {tuple(layers.ACTIVATIONS)}")
    if any(not 0 <= i < self.n_layers for i in self.local_layers):
      fail("local_layers", f"layer indices in [0, {self.n_layers})")
    if self.local_layers and self.local_window < 1:
      fail("local_window", ">= 1")
    if self.loss_chunk < 0:
      fail("loss_chunk", "0 (all positions at once) or a positive number of positions")
    layers.check_compute_dtype(self.dtype)
    if self.attention not in layers.ATTENTION_IMPLEMENTATIONS:
      fail("attention", f"one of {layers.ATTENTION_IMPLEMENTATIONS}")
    if self.remat not in layers.REMAT_POLICIES:
      fail("remat", f"one of {layers.REMAT_POLICIES}")
    if self.scan_layers and self.local_layers:
      fail("scan_layers", "False for a model with local_layers (scanned layers must be identical)")
    if self.shared_input_norm and not self.parallel_residual:
      fail("shared_input_norm", "False unless model.parallel_residual (one norm feeds both parallel branches)")
    if self.output_bias and self.tie_embeddings:
      fail("output_bias", "False with tied embeddings (the embedding table has no bias)")

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  @property
  def kv_heads(self) -> int:
    return self.n_kv_heads or self.n_heads

  @property
  def rotary_dim(self) -> int:
    return int(self.head_dim * self.rotary_pct) if self.position_embedding == "rotary" else 0


class Attention(nn.Module):
  cfg: DecoderConfig
  window: int = 0  # > 0: a local layer, attending to the last `window` positions (applied when the mask is None)

  @nn.compact
  def __call__(self, x_BxLxD, positions_BxL, mask_BxLxS, cache: LayerCache | None, cache_index):
    cfg = self.cfg
    batch, length, _ = x_BxLxD.shape

    def project(name, heads):
      out = layers.dense(heads * cfg.head_dim, ("embed", "heads"), cfg.init_std, cfg.dtype, name, cfg.qkv_bias)
      return out(x_BxLxD).reshape(batch, length, heads, cfg.head_dim)

    q, k, v = project("query", cfg.n_heads), project("key", cfg.kv_heads), project("value", cfg.kv_heads)
    q = layers.apply_rotary(q, positions_BxL, cfg.rotary_dim, cfg.rotary_base)
    k = layers.apply_rotary(k, positions_BxL, cfg.rotary_dim, cfg.rotary_base)
    k, v, cache = layers.write_cache(cache, k, v, cache_index)
    scale = cfg.head_dim**-0.5 if cfg.scale_attention else 1.0
    out = layers.attend(q, k, v, mask_BxLxS, scale, implementation=cfg.attention, window=self.window)
    out_bias = cfg.proj_bias if cfg.attention_out_bias is None else cfg.attention_out_bias
    return layers.dense(cfg.d_model, ("heads", "embed"), cfg.init_std, cfg.dtype, "dense", out_bias)(out), cache


class Block(nn.Module):
  cfg: DecoderConfig
  window: int = 0  # Attention.window

  @nn.compact
  def __call__(self, x_BxLxD, positions_BxL, mask_BxLxS, cache, cache_index):
    cfg = self.cfg
    ln = lambda name: layers.norm(cfg.norm, cfg.layer_norm_eps, cfg.dtype, name)
    mlp = layers.MLP(cfg.d_mlp, cfg.activation, cfg.gated_mlp, cfg.proj_bias, cfg.init_std, cfg.dtype, name="mlp")
    normed = ln("input_layernorm")(x_BxLxD)
    attn_out, cache = Attention(cfg, self.window, name="attention")(
      normed, positions_BxL, mask_BxLxS, cache, cache_index
    )
    if cfg.parallel_residual:
      # The attention branch is added first, as before GPT-J's option existed: XLA's rounding follows the op
      # order, and the results in the README were measured with this one.
      with_attention = x_BxLxD + attn_out
      x_BxLxD = with_attention + mlp(normed if cfg.shared_input_norm else ln("post_attention_layernorm")(x_BxLxD))
    else:
      x_BxLxD = x_BxLxD + attn_out
      x_BxLxD = x_BxLxD + mlp(ln("post_attention_layernorm")(x_BxLxD))
    x_BxLxD = nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed"))
    self.sow("intermediates", "residual", x_BxLxD)  # the residual stream after each block, for probes
    return x_BxLxD, cache


class DecoderLM(nn.Module):
  """`__call__(tokens, positions, mask, cache, cache_index) -> (logits, cache)`.

  mask_BxLxS[b, i, j] says whether query i may attend key j, or None: causal over one uncached sequence (what
  training and scoring pass, and the one case Splash attention computes); `cache` is None (training) or one
  (keys, values) pair per layer that the call writes at `cache_index` and returns updated.
  """

  cfg: DecoderConfig

  def setup(self):
    cfg = self.cfg
    self.embed_in = layers.embedding(
      cfg.vocab_size, cfg.d_model, cfg.embedding_init_std, cfg.dtype, valid_vocab=cfg.valid_vocab
    )
    if cfg.position_embedding == "learned":
      self.embed_positions = layers.embedding(
        cfg.max_len, cfg.d_model, cfg.embedding_init_std, cfg.dtype, axes=(None, "embed")
      )
    block = Block
    if cfg.remat != "none":
      policy = None if cfg.remat == "full" else jax.checkpoint_policies.dots_with_no_batch_dims_saveable
      block = nn.remat(Block, policy=policy)
    if cfg.scan_layers:  # carry: the residual stream; per layer: its cache slice
      self.layers = nn.scan(
        block,
        variable_axes={"params": 0, "intermediates": 0},
        split_rngs={"params": True},
        in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast),
        length=cfg.n_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
      )(cfg, name="layers")
    else:
      self.layers = [
        block(cfg, cfg.local_window if i in cfg.local_layers else 0, name=f"layers_{i}") for i in range(cfg.n_layers)
      ]
    self.final_layer_norm = layers.norm(cfg.norm, cfg.layer_norm_eps, cfg.dtype, "final_layer_norm")
    if not cfg.tie_embeddings:
      self.embed_out = layers.dense(
        cfg.vocab_size,
        ("embed", "vocab"),
        cfg.init_std,
        cfg.dtype,
        "embed_out",
        use_bias=cfg.output_bias,
        valid_vocab=cfg.valid_vocab,
      )

  def embed(self, tokens_BxL):
    return self.embed_in(tokens_BxL)

  def from_embeddings(self, x_BxLxD, positions_BxL, mask_BxLxS, cache=None, cache_index=0, last_only=False):
    """`last_only`: logits of the last position alone [B, 1, V] (a decoding prefill needs no more)."""
    x_BxLxD, new_cache = self.blocks(x_BxLxD, positions_BxL, mask_BxLxS, cache, cache_index)
    return self.head(x_BxLxD[:, -1:] if last_only else x_BxLxD), new_cache

  def head(self, x_BxLxD):
    """Float32 logits of the real vocabulary from the residual stream after the last block."""
    x_BxLxD = self.final_layer_norm(x_BxLxD)
    logits = self.embed_in.attend(x_BxLxD) if self.cfg.tie_embeddings else self.embed_out(x_BxLxD)
    return layers.real_vocab_logits(logits, self.cfg.valid_vocab)

  def blocks(self, x_BxLxD, positions_BxL, mask_BxLxS, cache=None, cache_index=0):
    """The residual stream after the last block, and the updated cache."""
    cfg = self.cfg
    if cfg.position_embedding == "learned":
      x_BxLxD = x_BxLxD + self.embed_positions(positions_BxL)
    local_mask = None
    if cfg.local_layers and mask_BxLxS is not None:  # windows count cache slots, as HF GPT-Neo's do
      query_slots = cache_index + jnp.arange(x_BxLxD.shape[1])
      key_slots = jnp.arange(mask_BxLxS.shape[-1])
      local_mask = mask_BxLxS & ((query_slots[:, None] - key_slots[None, :]) < cfg.local_window)
    if cfg.scan_layers:
      x_BxLxD, new_cache = self.layers(x_BxLxD, positions_BxL, mask_BxLxS, cache, cache_index)
    else:
      new_cache = []
      for i, layer in enumerate(self.layers):
        mask = local_mask if i in cfg.local_layers else mask_BxLxS
        x_BxLxD, layer_cache = layer(x_BxLxD, positions_BxL, mask, None if cache is None else cache[i], cache_index)
        new_cache.append(layer_cache)
      new_cache = None if cache is None else tuple(new_cache)
    return x_BxLxD, new_cache

  def __call__(self, tokens_BxL, positions_BxL, mask_BxLxS, cache=None, cache_index=0, last_only=False):
    return self.from_embeddings(self.embed(tokens_BxL), positions_BxL, mask_BxLxS, cache, cache_index, last_only)

  def init_cache(self, batch: int, length: int) -> tuple[LayerCache, ...] | LayerCache:
    """One (keys, values) pair per layer; scanned layers: one pair stacked over layers [layers, B, S, G, K]."""
    shape = (batch, length, self.cfg.kv_heads, self.cfg.head_dim)
    if self.cfg.scan_layers:
      zeros = jnp.zeros((self.cfg.n_layers,) + shape, jnp.dtype(self.cfg.dtype))
      return zeros, zeros
    zeros = jnp.zeros(shape, jnp.dtype(self.cfg.dtype))
    return tuple((zeros, zeros) for _ in range(self.cfg.n_layers))


def residual_stream(intermediates: dict, cfg: DecoderConfig) -> jax.Array:
  """[layers, B, T, D] from the `intermediates` collection of an apply: the residual after every block."""
  if cfg.scan_layers:
    return intermediates["layers"]["residual"][0]
  return jnp.stack([intermediates[f"layers_{i}"]["residual"][0] for i in range(cfg.n_layers)])


def causal_inputs(tokens_BxL: jax.Array) -> tuple[jax.Array, None]:
  """Positions and the mask (None: causal) for right-padded training sequences."""
  batch, length = tokens_BxL.shape
  return jnp.broadcast_to(jnp.arange(length), (batch, length)), None


def init_params(model: DecoderLM, rng: jax.Array, length: int = 8) -> Any:
  tokens = jnp.zeros((1, length), jnp.int32)
  return model.init(rng, tokens, *causal_inputs(tokens))["params"]


def token_losses(model: DecoderLM, params, batch: dict) -> jax.Array:
  """Next-token cross-entropy at every target position [B, L-1] (fp32) of `batch["tokens"]`."""
  inputs = batch["tokens"][:, :-1]
  logits, _ = model.apply({"params": params}, inputs, *causal_inputs(inputs))
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["tokens"][:, 1:])


def weighted_loss(model: DecoderLM, params, batch: dict, weights_BxL: jax.Array) -> jax.Array:
  """The training loss: the sum of `weights_BxL` × next-token losses. With `model.cfg.loss_chunk`, fused: the
  output projection and the loss run a chunk of positions at a time (`fused_loss`)."""
  if not model.cfg.loss_chunk:
    return jnp.sum(token_losses(model, params, batch) * weights_BxL)
  inputs, targets = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
  embedded = model.apply({"params": params}, inputs, method=DecoderLM.embed)
  x_BxLxD, _ = model.apply({"params": params}, embedded, *causal_inputs(inputs), method=DecoderLM.blocks)
  projection = "embed_in" if model.cfg.tie_embeddings else "embed_out"
  head_params = {name: params[name] for name in ("final_layer_norm", projection)}
  head = lambda p, x: model.apply({"params": p}, x, method=DecoderLM.head)
  return fused_loss(head, head_params, x_BxLxD, targets, weights_BxL, model.cfg.loss_chunk)


def fused_loss(head: Callable, head_params, x_BxLxD, targets_BxL, weights_BxL, chunk: int) -> jax.Array:
  """The sum of weights × cross-entropy of `head(head_params, x)`'s logits, `chunk` positions of every sequence
  at a time. Each chunk's gradients (of `head_params` and x) are taken with its loss, in the forward pass: only
  [B, chunk, V] logits ever exist and nothing is recomputed; the backward pass scales them. The batch axis stays
  whole, so it keeps its sharding."""
  batch, length, width = x_BxLxD.shape
  padded = -(-length // chunk) * chunk

  def chunks(a):  # [B, L, ...] -> [N, B, chunk, ...], padded at the end (weight 0)
    a = jnp.pad(a, ((0, 0), (0, padded - length)) + ((0, 0),) * (a.ndim - 2))
    return jnp.swapaxes(a.reshape((batch, -1, chunk) + a.shape[2:]), 0, 1)

  def loss_and_grads(p, x_BxLxD):
    def add_chunk(grads_sum, arrays):
      x_BxCxD, targets_BxC, weights_BxC = arrays

      def chunk_loss(p, x):
        losses = optax.softmax_cross_entropy_with_integer_labels(head(p, x), targets_BxC)
        return jnp.sum(losses * weights_BxC)

      value, (p_grads, x_grads) = jax.value_and_grad(chunk_loss, argnums=(0, 1))(p, x_BxCxD)
      return jax.tree.map(jnp.add, grads_sum, p_grads), (value, x_grads)

    arrays = (chunks(x_BxLxD), chunks(targets_BxL), chunks(weights_BxL))
    p_grads, (values, x_grads) = jax.lax.scan(add_chunk, jax.tree.map(jnp.zeros_like, p), arrays)
    x_grads = jnp.swapaxes(x_grads, 0, 1).reshape(batch, padded, width)[:, :length]
    return jnp.sum(values), (p_grads, x_grads)

  @jax.custom_vjp
  def loss(p, x):
    return loss_and_grads(p, x)[0]

  def scaled_grads(grads, cotangent):
    return jax.tree.map(lambda g: (g * cotangent).astype(g.dtype), grads)

  loss.defvjp(loss_and_grads, scaled_grads)
  return loss(head_params, x_BxLxD)


@dataclasses.dataclass(frozen=True)
class EmbeddingReads:
  """How an untied decoder's loss reads its two vocabulary-sized matrices: the input table only at the rows of
  the input tokens, the output projection as logits = h · kernel at every position. So one example's gradient of
  the table is one row per input position, and of the kernel hᵀ · dlogits, rank ≤ positions (grad_alignment
  keeps both factored)."""

  table: tuple[str, ...]  # the input-embedding table in the parameter tree
  kernel: tuple[str, ...]  # the output projection's kernel [D, V]
  input_ids: Callable  # batch -> the token ids the table is read at [B, L]
  embed: Callable  # (params, ids_BxL) -> x_BxLxD, as the forward pass embeds them
  # (params, x_BxLxD, batch, logits_offset_BxLxV) -> (token losses, h_BxLxD): the loss given the inputs' embeddings
  # (it reads no table row) with `logits_offset` added to the logits (zeros: its gradient is dlogits), and h, what
  # the output projection reads
  losses: Callable


def embedding_reads(model: DecoderLM) -> EmbeddingReads | None:
  """None when the output projection reads the input table too (tied embeddings): its gradient is then dense."""
  if model.cfg.tie_embeddings:
    return None

  def losses(params, x_BxLxD, batch, logits_offset_BxLxV):
    inputs = batch["tokens"][:, :-1]
    (logits, _), captured = model.apply(
      {"params": params},
      x_BxLxD,
      *causal_inputs(inputs),
      method=DecoderLM.from_embeddings,
      capture_intermediates=lambda module, _: module.name == "final_layer_norm",
    )
    logits = logits + logits_offset_BxLxV.astype(logits.dtype)
    h = captured["intermediates"]["final_layer_norm"]["__call__"][0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["tokens"][:, 1:]), h

  return EmbeddingReads(
    table=("embed_in", "embedding"),
    kernel=("embed_out", "kernel"),
    input_ids=lambda batch: batch["tokens"][:, :-1],
    embed=lambda params, ids: model.apply({"params": params}, ids, method=DecoderLM.embed),
    losses=losses,
  )


def generate(
  model: DecoderLM, params, prompts_BxP: jax.Array, prompt_mask_BxP, max_new_tokens: int, eos_id: int
) -> jax.Array:
  """Greedy continuations [B, max_new_tokens] of left-padded prompts (the padding is the mask: None)."""
  del prompt_mask_BxP
  return decoding.greedy_decode(model, params, prompts_BxP, max_new_tokens, eos_id)


def hidden_states(model: DecoderLM, params, tokens_BxT: jax.Array) -> jax.Array:
  """[layers, B, T, D]: the residual stream after every block while the model reads `tokens_BxT`."""
  _, state = model.apply({"params": params}, tokens_BxT, *causal_inputs(tokens_BxT), mutable=["intermediates"])
  return residual_stream(state["intermediates"], model.cfg)
