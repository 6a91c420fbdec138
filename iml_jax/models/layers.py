"""Building blocks shared by the decoder-only families and T5 (and the compute-dtype check of every model).

Every parameter carries logical axis names from {vocab, embed, heads, mlp}; `sharding.py` maps them
onto the mesh. Parameters are float32; `dtype` is the compute dtype.

Shape suffixes: B batch, L query length, S key/cache length, D model width, H heads, K head width.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from iml_jax.errors import IMLError

ACTIVATIONS = {
  "gelu": lambda x: nn.gelu(x, approximate=False),  # GPT-NeoX
  "gelu_new": lambda x: nn.gelu(x, approximate=True),  # GPT-2, GPT-Neo, T5 v1.1 (tanh approximation)
  "silu": nn.silu,  # Llama
  "relu": nn.relu,  # T5 v1.0
}
NORMS = ("layernorm", "rmsnorm")
# "einsum": our own softmax attention; "xla" / "cudnn": `jax.nn.dot_product_attention` with that
# implementation ("cudnn" = fused flash attention on NVIDIA GPUs, bf16/fp16 only); "splash": Pallas Splash
# attention (TPU; interpreted on other backends, for tests) wherever a call is one uncached causal sequence,
# einsum elsewhere; "auto": chosen per backend and call by `resolve_attention`.
ATTENTION_IMPLEMENTATIONS = ("auto", "einsum", "xla", "cudnn", "splash")
SPLASH_BLOCKS = (512, 256, 128)  # Splash's block sizes, largest first; sequences are padded to a multiple of 128
SPLASH_BLOCK_FIELDS = (
  "block_q",
  "block_kv",
  "block_kv_compute",
  "block_q_dkv",
  "block_kv_dkv",
  "block_kv_dkv_compute",
  "block_q_dq",
  "block_kv_dq",
)
REMAT_POLICIES = ("none", "full", "dots_saveable")
COMPUTE_DTYPES = ("float32", "bfloat16")


def default_or_normal_init(init_std: float):
  """Normal(init_std) kernels, or Flax's default (LeCun normal) when init_std is 0."""
  return nn.initializers.normal(init_std) if init_std else nn.initializers.lecun_normal()


def check_compute_dtype(dtype: str) -> None:
  if dtype not in COMPUTE_DTYPES:
    raise IMLError(f"config field model.dtype = {dtype!r}: expected one of {COMPUTE_DTYPES}")


def padded_vocab_init(init, valid_vocab: int, vocab_axis: int):
  """`init` drawn for the `valid_vocab` real entries along `vocab_axis`, then zero-padded to the full shape: padding
  the vocabulary for a mesh's tensor axis changes no parameter's draw, so a config trains identically on any mesh."""
  if not valid_vocab:
    return init

  def initializer(key, shape, dtype=jnp.float32):
    real = tuple(valid_vocab if axis == vocab_axis else size for axis, size in enumerate(shape))
    return jnp.pad(init(key, real, dtype), [(0, size - r) for size, r in zip(shape, real)])

  return initializer


def dense(
  features: int,
  axes: tuple[str | None, str | None],
  init_std: float,
  dtype: str,
  name: str,
  use_bias: bool = True,
  valid_vocab: int = 0,
) -> nn.Dense:
  """`valid_vocab`: the output features are a padded vocabulary (the unembedding) with this many real entries."""
  kernel_init = padded_vocab_init(nn.initializers.normal(init_std), valid_vocab, vocab_axis=1)
  return nn.Dense(
    features,
    use_bias=use_bias,
    dtype=jnp.dtype(dtype),
    name=name,
    kernel_init=nn.with_logical_partitioning(kernel_init, axes),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]),
  )


def norm(kind: str, eps: float, dtype: str, name: str) -> nn.Module:
  """LayerNorm (scale and bias) or RMSNorm (scale only, no mean subtraction: Llama, T5)."""
  scale_init = nn.with_logical_partitioning(nn.initializers.ones, ("embed",))
  if kind == "rmsnorm":
    return nn.RMSNorm(epsilon=eps, dtype=jnp.dtype(dtype), name=name, scale_init=scale_init)
  return nn.LayerNorm(
    epsilon=eps,
    dtype=jnp.dtype(dtype),
    name=name,
    scale_init=scale_init,
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
  )


def embedding(
  num: int, features: int, init_std: float, dtype: str, axes=("vocab", "embed"), name=None, valid_vocab: int = 0
) -> nn.Embed:
  """`valid_vocab`: `num` is a padded vocabulary with this many real rows."""
  embedding_init = padded_vocab_init(nn.initializers.normal(init_std), valid_vocab, vocab_axis=0)
  return nn.Embed(
    num, features, dtype=jnp.dtype(dtype), name=name, embedding_init=nn.with_logical_partitioning(embedding_init, axes)
  )


def real_vocab_logits(logits_BxLxV: jax.Array, valid_vocab: int) -> jax.Array:
  """Float32 logits of the real vocabulary alone [B, L, valid_vocab]: the rows padded for the tensor axis take
  part in no softmax or argmax, so the loss and the predictions are those of the unpadded model. 0: no padding."""
  logits_BxLxV = logits_BxLxV.astype(jnp.float32)
  if not valid_vocab or valid_vocab >= logits_BxLxV.shape[-1]:
    return logits_BxLxV
  return logits_BxLxV[..., :valid_vocab]


def apply_rotary(x_BxLxHxK: jax.Array, positions_BxL: jax.Array, rotary_dim: int, base: float) -> jax.Array:
  """Rotary embedding on the first `rotary_dim` features of each head, rotate-half layout (NeoX, Llama)."""
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


def write_cache(cache: tuple[jax.Array, jax.Array] | None, k_BxLxHxK, v_BxLxHxK, cache_index):
  """Keys and values to attend over: the new ones alone, or the cache with them written at `cache_index`."""
  if cache is None:
    return k_BxLxHxK, v_BxLxHxK, None
  k = jax.lax.dynamic_update_slice_in_dim(cache[0], k_BxLxHxK.astype(cache[0].dtype), cache_index, axis=1)
  v = jax.lax.dynamic_update_slice_in_dim(cache[1], v_BxLxHxK.astype(cache[1].dtype), cache_index, axis=1)
  return k, v, (k, v)


def target_platform() -> str:
  """The platform the program being traced will run on: that of the mesh set with `jax.set_mesh` (a TPU slice's
  devices when compiling for a TPU from another machine, `tpu_plan`), else JAX's default backend."""
  device = jax.sharding.get_abstract_mesh().abstract_device
  return jax.default_backend() if device is None else device.platform


def resolve_attention(implementation: str, causal_sequence: bool, length: int, head_dim: int, dtype) -> str:
  """The implementation a call runs. `causal_sequence`: the call is one uncached causal sequence (training,
  scoring), the only kind Splash computes. "auto": Splash on TPU (sequences of 128 positions or more; shorter ones
  would be mostly padding), cuDNN's flash attention on GPU (bf16/fp16, head width a multiple of 8 up to 128), for
  such sequences; our einsum otherwise and on CPU. The backend is the one the program is compiled for."""
  if implementation == "auto":
    backend = target_platform()
    if backend == "tpu" and causal_sequence and length >= SPLASH_BLOCKS[-1]:
      return "splash"
    cudnn_dtype = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if backend == "gpu" and causal_sequence and cudnn_dtype and head_dim % 8 == 0 and head_dim <= 128:
      return "cudnn"
    return "einsum"
  if implementation == "splash" and not causal_sequence:
    return "einsum"
  return implementation


def causal_mask(length: int, window: int = 0) -> jax.Array:
  """[L, L]: query i attends keys j <= i (and i - j < window when window > 0)."""
  query, key = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
  return (key <= query) & ((query - key < window) if window else True)


def splash_attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, scale: float, window: int = 0) -> jax.Array:
  """Causal (windowed when window > 0) attention by Pallas Splash [B, L, H, K]. The sequence is padded at its end
  to a multiple of 128 positions, which no real position attends (they lie in its future), and cut back. Under a
  mesh set with `jax.set_mesh`, each device runs the kernel on its own rows and heads (shard_map over the batch's
  data/fsdp axes and the heads' tensor axis); without one, on the whole batch."""
  from jax.experimental.pallas.ops.tpu import splash_attention as splash

  length = q_BxLxHxK.shape[1]
  padded = -(-length // SPLASH_BLOCKS[-1]) * SPLASH_BLOCKS[-1]
  block = next(block for block in SPLASH_BLOCKS if padded % block == 0)
  head_mask = splash.LocalMask((padded, padded), (window - 1, 0), 0) if window else splash.CausalMask((padded, padded))

  def on_shard(q, k, v):  # the kernel takes one example's heads first: [H, L, K]
    kernel = splash.make_splash_mha(
      splash.MultiHeadMask([head_mask] * q.shape[2]),
      head_shards=1,
      q_seq_shards=1,
      block_sizes=splash.BlockSizes(**dict.fromkeys(SPLASH_BLOCK_FIELDS, block)),
      interpret=target_platform() != "tpu",
    )
    heads_first = lambda x: jnp.swapaxes(jnp.pad(x, ((0, 0), (0, padded - length), (0, 0), (0, 0))), 1, 2)
    out = jax.vmap(kernel)(heads_first(q * jnp.asarray(scale, q.dtype)), heads_first(k), heads_first(v))
    return jnp.swapaxes(out, 1, 2)[:, :length]

  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or not {"data", "fsdp", "tensor"} <= set(mesh.axis_names):
    return on_shard(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK)
  rows = mesh.shape["data"] * mesh.shape["fsdp"]
  batch_axes = ("data", "fsdp") if q_BxLxHxK.shape[0] % rows == 0 else None
  tensor = mesh.shape["tensor"]
  heads_axis = "tensor" if q_BxLxHxK.shape[2] % tensor == 0 and k_BxLxGxK.shape[2] % tensor == 0 else None
  spec = jax.sharding.PartitionSpec(batch_axes, None, heads_axis, None)
  return jax.shard_map(on_shard, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec, check_vma=False)(
    q_BxLxHxK, k_BxLxGxK, v_BxLxGxK
  )


def attend(
  q_BxLxHxK,
  k_BxSxGxK,
  v_BxSxGxK,
  mask_BxLxS,
  scale: float,
  bias_BxHxLxS=None,
  implementation: str = "einsum",
  window: int = 0,
) -> jax.Array:
  """Softmax attention [B, L, H*K]; G key/value heads serve H/G query heads each (GQA). `mask_BxLxS` None: one
  uncached causal sequence (L == S), within the last `window` keys when window > 0."""
  batch, length, heads, head_dim = q_BxLxHxK.shape
  causal_sequence = mask_BxLxS is None and bias_BxHxLxS is None
  implementation = resolve_attention(implementation, causal_sequence, length, head_dim, q_BxLxHxK.dtype)
  if implementation == "splash":
    return splash_attention(q_BxLxHxK, k_BxSxGxK, v_BxSxGxK, scale, window).reshape(batch, length, heads * head_dim)
  if mask_BxLxS is None:
    mask_BxLxS = causal_mask(length, window)[None]
  if implementation != "einsum":
    out = jax.nn.dot_product_attention(
      q_BxLxHxK,
      k_BxSxGxK,
      v_BxSxGxK,
      bias=bias_BxHxLxS,
      mask=mask_BxLxS[:, None],
      scale=scale,
      implementation=implementation,
    )
    return out.reshape(batch, length, heads * head_dim)
  groups = heads // k_BxSxGxK.shape[2]
  q = q_BxLxHxK.reshape(batch, length, k_BxSxGxK.shape[2], groups, head_dim)
  scores = jnp.einsum("blgrk,bsgk->bgrls", q, k_BxSxGxK).astype(jnp.float32) * scale
  scores = scores.reshape(batch, heads, length, -1)
  if bias_BxHxLxS is not None:
    scores = scores + bias_BxHxLxS
  scores = jnp.where(mask_BxLxS[:, None], scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1).astype(v_BxSxGxK.dtype)
  probs = probs.reshape(batch, k_BxSxGxK.shape[2], groups, length, -1)
  out = jnp.einsum("bgrls,bsgk->blgrk", probs, v_BxSxGxK)
  return out.reshape(batch, length, heads * head_dim)


class MLP(nn.Module):
  """`down(act(up(x)))`, or gated `down(act(gate(x)) * up(x))` (SwiGLU, T5 v1.1's gated GELU)."""

  d_mlp: int
  activation: str
  gated: bool
  use_bias: bool
  init_std: float
  dtype: str
  names: tuple[str, str, str] = ("dense_h_to_4h", "gate", "dense_4h_to_h")  # up, gate, down

  @nn.compact
  def __call__(self, x_BxLxD):
    up, gate, down = self.names
    h = dense(self.d_mlp, ("embed", "mlp"), self.init_std, self.dtype, up, self.use_bias)(x_BxLxD)
    if self.gated:
      g = dense(self.d_mlp, ("embed", "mlp"), self.init_std, self.dtype, gate, self.use_bias)(x_BxLxD)
      h = ACTIVATIONS[self.activation](g) * h
    else:
      h = ACTIVATIONS[self.activation](h)
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    return dense(x_BxLxD.shape[-1], ("mlp", "embed"), self.init_std, self.dtype, down, self.use_bias)(h)
