"""Gradient alignment (docs/study.md §9): per-example gradients of definitions and of their QA pairs.

For every definition and each of its questions: cosine similarity and L2 distance of the two gradients,
and the L1 / L2 / L∞ norms of both; over all four sets: the gradient variance (mean squared distance to
the mean gradient) and the mean cosine to the mean gradient.

Gradients are never flattened and never stored for a whole set: a jitted function computes them for a
chunk of examples at a time (`jax.vmap` of `jax.grad` of the training loss on one example, fp32) and
reduces them to the statistics (and the running gradient sum) inside the chunk. Parameters and
gradients keep the sharding they have in training; every reduction is a sum over the parameter tree.
"""

import dataclasses
import functools

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

  def one(definition, its_questions):
    g_def = example_gradient(model, params, definition, mask)
    g_qs = jax.vmap(lambda q: example_gradient(model, params, q, mask))(its_questions)
    dots = jax.vmap(lambda g: tree_dot(g, g_def))(g_qs)
    dist = jax.vmap(lambda g: jnp.sqrt(_tree_sum(lambda a, b: jnp.square(a - b), g, g_def)))(g_qs)
    def_norms, q_norms = tree_norms(g_def), jax.vmap(tree_norms)(g_qs)
    stats = {
      "cos": dots / jnp.maximum(def_norms["l2"] * q_norms["l2"], 1e-30),
      "dist": dist,
      **{f"def_{k}": v for k, v in def_norms.items()},
      **{f"q_{k}": v for k, v in q_norms.items()},
    }
    return stats, jax.tree.map(lambda d, q: d + q.sum(0), g_def, g_qs)

  (defs, qs), n = _chunked((definitions, questions), chunk)
  n_chunks = jax.tree.leaves(defs)[0].shape[0]
  valid = (jnp.arange(n_chunks * chunk) < n).reshape(n_chunks, chunk)  # padding rows add nothing

  def step(total, xs):
    chunk_defs, chunk_qs, chunk_valid = xs
    stats, sums = jax.vmap(one)(chunk_defs, chunk_qs)
    sums = jax.tree.map(lambda s: jnp.einsum("c,c...->...", chunk_valid.astype(s.dtype), s), sums)
    return jax.tree.map(jnp.add, total, sums), stats

  zeros = jax.tree.map(jnp.zeros_like, params)
  total, stats = jax.lax.scan(step, zeros, (defs, qs, valid))
  return _unchunk(stats, n), total


@functools.partial(jax.jit, static_argnames=("model", "chunk"))
def to_mean_statistics(model, params, examples: dict, mean_gradient, mask=None, chunk: int = 8):
  """Per example: squared L2 distance and cosine between its gradient and `mean_gradient`."""
  mean_norm = jnp.sqrt(_tree_sum(jnp.square, mean_gradient))

  def one(example):
    g = example_gradient(model, params, example, mask)
    cos = tree_dot(g, mean_gradient) / jnp.maximum(jnp.sqrt(_tree_sum(jnp.square, g)) * mean_norm, 1e-30)
    return {"sq_dist": _tree_sum(lambda a, b: jnp.square(a - b), g, mean_gradient), "cos": cos}

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
