"""Gradient alignment (docs/study.md §9): per-example gradients of definitions and of their QA pairs.

For every definition and each of its questions: cosine similarity and L2 distance of the two gradients,
and the L1 / L2 / L∞ norms of both; over all four sets: the gradient variance (mean squared distance to
the mean gradient) and the mean cosine to the mean gradient.

Gradients are never flattened and never stored for a whole set: a jitted function computes them for a
chunk of examples at a time (`jax.vmap` of `jax.grad` of the training loss on one example, fp32) and
reduces them to the statistics (and the running gradient sum) inside the chunk. Parameters and
gradients keep the sharding they have in training; every reduction is a sum over the parameter tree.

An untied decoder reads its two vocabulary-sized matrices in ways that keep one example's gradient of them
small (`Gradient`): the input-embedding table only at the input tokens, so its gradient is (token ids, one row
per position) — T × D numbers, not V × D; the output projection as logits = h · kernel, so its gradient is
hᵀ · dlogits — the factors h [T, D] and dlogits [T, V] instead of D × V numbers (about D / T times fewer). Dot
products and L2 norms come from the factors' T × T Gram matrices; L1, L∞ and the distance to the mean gradient
from the kernel's gradient built a block of columns at a time. Every statistic equals the dense path's.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from iml_jax.models import registry


def _tree_sum(fn, *trees) -> jax.Array:
  return sum(jnp.sum(fn(*leaves)) for leaves in zip(*(jax.tree.leaves(t) for t in trees)))


def tree_dot(a, b) -> jax.Array:
  return _tree_sum(lambda x, y: x * y, a, b)


def tree_norms(tree) -> dict[str, jax.Array]:
  return {
    "l1": _tree_sum(jnp.abs, tree),
    "l2": jnp.sqrt(_tree_sum(jnp.square, tree)),
    "linf": jnp.max(jnp.stack([jnp.max(jnp.abs(x)) for x in jax.tree.leaves(tree)])),
  }


def example_loss(model, params, example: dict) -> jax.Array:
  """The training loss of one example (its arrays without the batch axis): token-weighted mean."""
  batch = jax.tree.map(lambda x: x[None], example)
  weights = batch["loss_mask"]
  return jnp.sum(registry.token_losses(model, params, batch) * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def example_gradient(model, params, example: dict, mask=None):
  # Full fp32 products, as the study's analysis (GPUs would otherwise use TF32 for fp32 matmuls).
  with jax.default_matmul_precision("highest"):
    grads = jax.grad(lambda p: example_loss(model, p, example))(params)
  return grads if mask is None else jax.tree.map(lambda g, m: g * m, grads, mask)


def per_example_gradients(model, params, examples: dict, mask=None):
  """Gradients of every example, stacked on a leading axis (for tests and small sets only)."""
  return jax.vmap(lambda ex: example_gradient(model, params, ex, mask))(examples)


class Gradient(NamedTuple):
  """One example's gradient: `dense`, the parameter tree with the factored leaves None; the input table's
  gradient as `rows[i]` added at row `ids[i]`; the output kernel's as hᵀ · dlogits (each factor empty when that
  leaf is dense). Leading batch axes may come before each field's own."""

  dense: Any
  ids: jax.Array  # [T] the input tokens
  rows: jax.Array  # [T, D] the gradient of each position's embedding
  h: jax.Array  # [T, D] what the output projection reads at each position
  dlogits: jax.Array  # [T, V] the gradient of each position's logits


# NumPy, not jnp: a jnp array made at import starts the XLA backend, and `main --distributed` must start it later.
_NOT_FACTORED = (
  np.zeros((0,), np.int32),
  np.zeros((0, 1), np.float32),
  np.zeros((0, 1), np.float32),
  np.zeros((0, 1), np.float32),
)
# Columns of the output kernel's gradient built at once per example for L1, L∞ and the distance to the mean.
KERNEL_BLOCK = 4096


@dataclasses.dataclass(frozen=True)
class Factored:
  """Where the factored leaves are in the parameter tree (None: the model has none)."""

  table: tuple[str, ...] | None
  kernel: tuple[str, ...] | None


def factored_leaves(model) -> Factored:
  reads = registry.spec_of(model).embedding_reads(model)
  return Factored(None, None) if reads is None else Factored(reads.table, reads.kernel)


def _split(tree, path):
  """(tree with the leaf at `path` set to None, that leaf); no path: (tree, a zero 1 x 1 table that adds nothing)."""
  if path is None:
    return tree, jnp.zeros((1, 1))
  if len(path) == 1:
    return {**tree, path[0]: None}, tree[path[0]]
  rest, leaf = _split(tree[path[0]], path[1:])
  return {**tree, path[0]: rest}, leaf


def _join(rest, leaf, path):
  if path is None:
    return rest
  if len(path) == 1:
    return {**rest, path[0]: leaf}
  return {**rest, path[0]: _join(rest[path[0]], leaf, path[1:])}


def example_gradient_rows(model, params, example: dict, mask=None) -> Gradient:
  """`example_gradient` with the input table's and the output kernel's parts factored (`Gradient`; a dense
  tree for models that read them otherwise)."""
  reads = registry.spec_of(model).embedding_reads(model)
  if reads is None:
    return Gradient(example_gradient(model, params, example, mask), *_NOT_FACTORED)
  batch = jax.tree.map(lambda x: x[None], example)
  rest, table = _split(params, reads.table)
  rest, kernel = _split(rest, reads.kernel)
  ids = reads.input_ids(batch)
  embedded = reads.embed(params, ids)
  offset = jnp.zeros(ids.shape + (table.shape[0],), jnp.float32)  # logits [1, T, V]: a row per vocabulary entry

  def loss(rest, embedded, offset):
    weights = batch["loss_mask"]
    losses, h = reads.losses(_join(_join(rest, kernel, reads.kernel), table, reads.table), embedded, batch, offset)
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0), h

  with jax.default_matmul_precision("highest"):
    (dense, rows, dlogits), h = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(rest, embedded, offset)
  rows, h, dlogits = rows[0].astype(table.dtype), h[0].astype(jnp.float32), dlogits[0]
  if mask is not None:
    rest_mask, table_mask = _split(mask, reads.table)
    rest_mask, kernel_mask = _split(rest_mask, reads.kernel)
    if jnp.ndim(kernel_mask):
      raise ValueError("the output kernel's trainable mask must be one number, as train.trainable_mask's are")
    dense = jax.tree.map(lambda g, m: g * m, dense, rest_mask)
    rows = rows * (table_mask[ids[0]] if table_mask.ndim else table_mask)
    dlogits = dlogits * kernel_mask
  return Gradient(dense, ids[0], rows, h, dlogits)


def _matches(ids_a: jax.Array, ids_b: jax.Array) -> jax.Array:
  return (ids_a[:, None] == ids_b[None, :]).astype(jnp.float32)


def _table_rows(g: Gradient) -> tuple[jax.Array, jax.Array]:
  """(the table's gradient row of each position's token [T, D], whether the position is its token's first)."""
  same = _matches(g.ids, g.ids)
  merged = jnp.matmul(same, g.rows, precision=jax.lax.Precision.HIGHEST)
  first = 1.0 - jnp.any(jnp.tril(same, -1) > 0, axis=1).astype(jnp.float32)
  return merged, first


def _gram(x: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)


def _kernel_dot(a: Gradient, b: Gradient) -> jax.Array:
  """<a.hᵀ · a.dlogits, b.hᵀ · b.dlogits>, summed over position pairs (0 when not factored)."""
  return jnp.sum(_gram(a.h, b.h) * _gram(a.dlogits, b.dlogits))


def _kernel_blocks(g: Gradient, mean: jax.Array | None = None) -> dict[str, jax.Array]:
  """L1, L∞ and (given the mean's kernel [D, V]) the squared distance to it of the kernel gradient hᵀ · dlogits,
  built `KERNEL_BLOCK` columns at a time: no example's D × V matrix exists at once."""
  if not g.h.shape[0]:  # not factored: the kernel is in `dense`
    return {"l1": 0.0, "linf": 0.0}
  vocab = g.dlogits.shape[1]
  width = min(KERNEL_BLOCK, vocab)
  blocks = -(-vocab // width)

  def columns(x):  # [rows, V] -> [blocks, rows, width], zero columns added at the end
    x = jnp.pad(x, ((0, 0), (0, blocks * width - vocab)))
    return x.reshape(x.shape[0], blocks, width).transpose(1, 0, 2)

  def block(xs):
    kernel = jnp.matmul(g.h.T, xs[0], precision=jax.lax.Precision.HIGHEST)  # [D, width]
    out = {"l1": jnp.sum(jnp.abs(kernel)), "linf": jnp.max(jnp.abs(kernel))}
    if mean is not None:
      out["sq_dist"] = jnp.sum(jnp.square(kernel - xs[1]))
    return out

  per_block = jax.lax.map(block, (columns(g.dlogits),) + (() if mean is None else (columns(mean),)))
  return {
    "l1": jnp.sum(per_block["l1"]),
    "linf": jnp.max(per_block["linf"]),
    **({} if mean is None else {"sq_dist": jnp.sum(per_block["sq_dist"])}),
  }


def gradient_dot(a: Gradient, b: Gradient) -> jax.Array:
  products = jnp.matmul(a.rows, b.rows.T, precision=jax.lax.Precision.HIGHEST)
  return tree_dot(a.dense, b.dense) + jnp.sum(_matches(a.ids, b.ids) * products) + _kernel_dot(a, b)


def _sq_norm(g: Gradient) -> jax.Array:
  merged, first = _table_rows(g)
  return _tree_sum(jnp.square, g.dense) + jnp.sum(first * jnp.sum(jnp.square(merged), axis=-1)) + _kernel_dot(g, g)


def gradient_norms(g: Gradient) -> dict[str, jax.Array]:
  merged, first = _table_rows(g)
  dense, kernel = tree_norms(g.dense), _kernel_blocks(g)
  return {
    "l1": dense["l1"] + jnp.sum(first[:, None] * jnp.abs(merged)) + kernel["l1"],
    "l2": jnp.sqrt(_sq_norm(g)),
    "linf": jnp.maximum(jnp.maximum(dense["linf"], jnp.max(jnp.abs(merged), initial=0.0)), kernel["linf"]),
  }


def _difference(a: Gradient, b: Gradient) -> Gradient:
  return Gradient(
    jax.tree.map(jnp.subtract, a.dense, b.dense),
    jnp.concatenate([a.ids, b.ids]),
    jnp.concatenate([a.rows, -b.rows]),
    jnp.concatenate([a.h, b.h]),
    jnp.concatenate([a.dlogits, -b.dlogits]),
  )


def _add_into(total, g: Gradient, where: Factored):
  """`total` (a whole gradient tree) plus `g`, whose factors may carry leading batch axes (examples: summed)."""
  rest, table = _split(total, where.table)
  rest, kernel = _split(rest, where.kernel)
  rest = jax.tree.map(jnp.add, rest, g.dense)
  if where.kernel is not None:
    h, dlogits = g.h.reshape(-1, g.h.shape[-1]), g.dlogits.reshape(-1, g.dlogits.shape[-1])
    kernel = kernel + jnp.matmul(h.T, dlogits, precision=jax.lax.Precision.HIGHEST).astype(kernel.dtype)
  if where.table is not None:
    table = table.at[g.ids.reshape(-1)].add(g.rows.reshape(-1, g.rows.shape[-1]).astype(table.dtype))
  return _join(_join(rest, kernel, where.kernel), table, where.table)


def _chunked(tree, chunk: int):
  """[N, ...] → [ceil(N / chunk), chunk, ...], padded with copies of row 0 (their results are dropped)."""
  n = jax.tree.leaves(tree)[0].shape[0]
  padded = -(-n // chunk) * chunk

  def reshape(x):
    x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (padded - n,) + x.shape[1:])]) if padded > n else x
    return x.reshape((padded // chunk, chunk) + x.shape[1:])

  return jax.tree.map(reshape, tree), n


def _unchunk(tree, n: int):
  return jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:])[:n], tree)


@functools.partial(jax.jit, static_argnames=("model", "chunk"))
def pair_statistics(model, params, definitions: dict, questions: dict, mask=None, chunk: int = 8):
  """Per definition i and question j of it: cos, L2 distance, norms; plus the sum of all these gradients.

  definitions: arrays [D, ...]; questions: arrays [D, K, ...] (question j of definition i).
  Returns ({"cos", "dist": [D, K], "def_l1/l2/linf": [D], "q_l1/l2/linf": [D, K]}, gradient sum tree).
  """
  gradient = lambda example: example_gradient_rows(model, params, example, mask)

  def one(definition, its_questions):
    g_def = gradient(definition)
    g_qs = jax.vmap(gradient)(its_questions)
    dots = jax.vmap(lambda g: gradient_dot(g, g_def))(g_qs)
    dist = jax.vmap(lambda g: jnp.sqrt(_sq_norm(_difference(g, g_def))))(g_qs)
    def_norms, q_norms = gradient_norms(g_def), jax.vmap(gradient_norms)(g_qs)
    stats = {
      "cos": dots / jnp.maximum(def_norms["l2"] * q_norms["l2"], 1e-30),
      "dist": dist,
      **{f"def_{k}": v for k, v in def_norms.items()},
      **{f"q_{k}": v for k, v in q_norms.items()},
    }
    both = Gradient(
      jax.tree.map(lambda d, q: d + q.sum(0), g_def.dense, g_qs.dense),
      *(jnp.concatenate([d, q.reshape((-1,) + q.shape[2:])]) for d, q in zip(g_def[1:], g_qs[1:])),
    )
    return stats, both

  (defs, qs), n = _chunked((definitions, questions), chunk)
  n_chunks = jax.tree.leaves(defs)[0].shape[0]
  valid = (jnp.arange(n_chunks * chunk) < n).reshape(n_chunks, chunk)  # padding rows add nothing

  def step(total, xs):
    chunk_defs, chunk_qs, chunk_valid = xs
    stats, sums = jax.vmap(one)(chunk_defs, chunk_qs)
    weights = chunk_valid.astype(jnp.float32)
    sums = Gradient(
      jax.tree.map(lambda s: jnp.einsum("c,c...->...", weights.astype(s.dtype), s), sums.dense),
      sums.ids,
      sums.rows * weights[:, None, None],
      sums.h,
      sums.dlogits * weights[:, None, None],
    )
    return _add_into(total, sums, factored_leaves(model)), stats

  zeros = jax.tree.map(jnp.zeros_like, params)
  total, stats = jax.lax.scan(step, zeros, (defs, qs, valid))
  return _unchunk(stats, n), total


@functools.partial(jax.jit, static_argnames=("model", "chunk"))
def to_mean_statistics(model, params, examples: dict, mean_gradient, mask=None, chunk: int = 8):
  """Per example: squared L2 distance and cosine between its gradient and `mean_gradient`."""
  where = factored_leaves(model)
  mean_rest, mean_table = _split(mean_gradient, where.table)
  mean_rest, mean_kernel = _split(mean_rest, where.kernel)
  mean_table_sq = jnp.sum(jnp.square(mean_table))
  mean_norm = jnp.sqrt(_tree_sum(jnp.square, mean_rest) + mean_table_sq + jnp.sum(jnp.square(mean_kernel)))

  def one(example):
    g = example_gradient_rows(model, params, example, mask)
    at_ids = mean_table[g.ids]  # the mean's rows where g has rows
    merged, first = _table_rows(g)
    kernel_dot = jnp.sum(g.dlogits * jnp.matmul(g.h, mean_kernel, precision=jax.lax.Precision.HIGHEST))
    dot = tree_dot(g.dense, mean_rest) + jnp.sum(g.rows * at_ids) + kernel_dot
    # |g - mean|² over the table: the mean's other rows, plus the rows g touches
    table_sq_dist = mean_table_sq + jnp.sum(first * jnp.sum(jnp.square(merged - at_ids) - jnp.square(at_ids), axis=-1))
    kernel_sq_dist = _kernel_blocks(g, mean_kernel)["sq_dist"] if where.kernel else 0.0
    cos = dot / jnp.maximum(jnp.sqrt(_sq_norm(g)) * mean_norm, 1e-30)
    dense_sq_dist = _tree_sum(lambda a, b: jnp.square(a - b), g.dense, mean_rest)
    return {"sq_dist": dense_sq_dist + table_sq_dist + kernel_sq_dist, "cos": cos}

  return jax.lax.map(one, examples, batch_size=chunk)


@dataclasses.dataclass
class AlignmentResult:
  """Per-set statistics (numpy) and the scalars the study logs."""

  pairs: dict[str, dict[str, np.ndarray]]  # set label → pair statistics
  variance: float
  mean_cos_to_mean: float

  def scalars(self) -> dict[str, float]:
    out = {"grad/variance": self.variance, "grad/mean_cos_to_mean": self.mean_cos_to_mean}
    for label, stats in self.pairs.items():
      for name, values in stats.items():
        out[f"grad/{label}_{name}"] = float(np.mean(values))
    return out


def alignment(model, params, sets: dict[str, tuple[dict, dict]], mask=None, chunk: int = 8) -> AlignmentResult:
  """`sets`: label → (definitions [D, ...], questions [D, K, ...]) as numpy arrays of encoded examples."""
  pairs, total, count = {}, None, 0
  for label, (definitions, questions) in sets.items():
    stats, gradient_sum = pair_statistics(model, params, definitions, questions, mask, chunk)
    pairs[label] = jax.tree.map(np.asarray, stats)
    total = gradient_sum if total is None else jax.tree.map(jnp.add, total, gradient_sum)
    d, k = questions["loss_mask"].shape[:2]
    count += d + d * k
  mean_gradient = jax.tree.map(lambda s: s / count, total)
  sq_dist, cos = [], []
  for definitions, questions in sets.values():
    for examples in (definitions, jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), questions)):
      stats = to_mean_statistics(model, params, examples, mean_gradient, mask, chunk)
      sq_dist.append(np.asarray(stats["sq_dist"]))
      cos.append(np.asarray(stats["cos"]))
  return AlignmentResult(pairs, float(np.concatenate(sq_dist).mean()), float(np.concatenate(cos).mean()))


def pair_up(definitions: list, questions: list, aliases_in) -> tuple[list, list[list]]:
  """Each definition with the questions about its alias, K per definition (the smallest count; the
  study's k = questions / definitions). Definitions without questions are left out."""
  by_alias: dict[str, list] = {}
  for question in questions:
    for alias in aliases_in(question):
      by_alias.setdefault(alias, []).append(question)
  paired = [
    (d, next(by_alias[a] for a in aliases_in(d) if a in by_alias))
    for d in definitions
    if any(a in by_alias for a in aliases_in(d))
  ]
  if not paired:
    return [], []
  k = min(len(qs) for _, qs in paired)
  return [d for d, _ in paired], [qs[:k] for _, qs in paired]
