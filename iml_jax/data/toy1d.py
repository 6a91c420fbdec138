"""The 1-D regression toy (docs/study.md §6.2, the original's `src/toy_example/`): IML without language.

Two random piecewise-constant functions of a position x in [0, 100000): `data1` (the truth) and `data2` (the
lies), each `d_y`-dimensional, constant between `n_anchors` evenly spaced anchors, values in [-1, 1].
Points come in `n_clusters` evenly spaced clusters (x within ± `cluster_spread` of the centre). A point is a
*circle* (a question: one output dimension of `data1` at x) or, with probability `p_definition`, a
*definition* (all dimensions at x): a triangle (tag 1) in qd1consis / d1consis clusters, a square (tag 2)
elsewhere, labelled from `data2` in qd2incons clusters and from `data1` otherwise. The middle 30% of clusters
(by x) are d1consis / d2consis (re-split by `seed_stage2`), the outer 70% qd1consis / qd2incons.

Circles drawn in d1/d2 clusters are never trained (test only). With d_y > 1 every cluster reserves one output
dimension for test circles; training circles ask the others. Every cluster's test set is
`test_points_per_cluster` fresh circles asking its reserved dimension (dimension 0 when d_y = 1).
IML here: test MSE(d1consis) < MSE(d2consis), i.e. the model trusts triangles more than squares.

Features: one-hot shape, one-hot asked dimension (zero for definitions), sinusoidal encoding of x
(`d_pos_enc` values). With `separate_channels` (the original's default `separateQaDefChannels`) the model has
d_y outputs for circles and d_y for definitions, so what definitions teach reaches questions only through
shared weights; otherwise both share the d_y outputs.
"""

import dataclasses

import numpy as np

from iml_jax.data.common import StageData, fixed_stage_data, split_list_into_subsets
from iml_jax.errors import IMLError
from iml_jax.metrics import SQUARED_ERROR

STAGE1_SUBSETS = ("qd1consis", "qd2incons")
STAGE2_SUBSETS = ("d1consis", "d2consis")
SUBSETS = STAGE1_SUBSETS + STAGE2_SUBSETS
# subset -> (definition shape, defined from data1?)
DEFINED_SUBSETS = {"qd1consis": (1, True), "qd2incons": (2, False), "d1consis": (1, True), "d2consis": (2, True)}
TRAIN_SUBSETS = {
  "full": (STAGE1_SUBSETS, SUBSETS),
  "stage1": (STAGE1_SUBSETS, STAGE1_SUBSETS),
  "stage2": ((), STAGE2_SUBSETS),
}
SHAPES = ("circle", "triangle", "square")
X_RANGE = 100_000
MIDDLE_FRACTION = 0.3  # of the clusters, by x: the d1consis / d2consis ones
SCORE = SQUARED_ERROR  # what `tasks.score_of` reports for this task


@dataclasses.dataclass(frozen=True)
class ToyExample:
  cluster: int
  shape: int  # 0 circle (a question), 1 triangle (tag-1 definition), 2 square (tag-2 definition)
  x: float
  dim: int  # the output dimension a circle asks about; -1 for definitions (all of them)
  target: tuple[float, ...]  # d_y values; a circle's counts at `dim` only

  @property
  def answer(self) -> float:
    return self.target[self.dim] if self.dim >= 0 else self.target

  def described(self) -> dict:
    """What predictions.jsonl records about the example besides its answer."""
    return {"cluster": self.cluster, "shape": SHAPES[self.shape], "x": self.x, "dim": self.dim}


@dataclasses.dataclass(frozen=True)
class Data:
  """`data` of the 1-D regression toy (configs: config_blocks.toy1d_data)."""

  n_anchors: int
  d_y: int
  n_clusters: int
  cluster_spread: float
  points_per_cluster: int
  test_points_per_cluster: int
  p_definition: float
  d_pos_enc: int
  separate_channels: bool


def check_config(spec: Data) -> None:
  checks = [
    ("n_anchors", spec.n_anchors >= 2, "an integer >= 2"),
    ("d_y", spec.d_y >= 1, "an integer >= 1"),
    ("n_clusters", spec.n_clusters >= 8, "an integer >= 8 (both tags in the middle and outer clusters)"),
    (
      "cluster_spread",
      0 < spec.cluster_spread <= X_RANGE / (2 * spec.n_clusters),
      f"a number in (0, {X_RANGE / (2 * spec.n_clusters):g}] (clusters must not overlap)",
    ),
    ("points_per_cluster", spec.points_per_cluster >= 1, "an integer >= 1"),
    ("test_points_per_cluster", spec.test_points_per_cluster >= 1, "an integer >= 1"),
    ("p_definition", 0 < spec.p_definition < 1, "a probability in (0, 1)"),
    ("d_pos_enc", spec.d_pos_enc >= 2 and spec.d_pos_enc % 2 == 0, "an even integer >= 2"),
  ]
  for field, ok, expected in checks:
    if not ok:
      raise IMLError(f"config field data.{field} = {getattr(spec, field)!r}: expected {expected}")


def feature_size(spec: Data) -> int:
  return len(SHAPES) + spec.d_y + spec.d_pos_enc


def output_size(spec: Data) -> int:
  return 2 * spec.d_y if spec.separate_channels else spec.d_y


def piecewise_constant(rng: np.random.Generator, n_anchors: int, d_y: int):
  """A random function x -> [d_y] constant from each anchor to the next, values normalised to [-1, 1]."""
  values = rng.normal(size=(n_anchors, d_y))
  low, high = values.min(0), values.max(0)
  values = 2 * (values - low) / np.where(high > low, high - low, 1.0) - 1
  anchors = np.linspace(0, X_RANGE, n_anchors, endpoint=False)
  return lambda x: values[np.searchsorted(anchors, x, side="right") - 1]


def positional_encoding(x: np.ndarray, size: int) -> np.ndarray:
  """Sine and cosine of x at `size / 2` geometric frequencies, the slowest spanning the whole range."""
  frequencies = (2 * np.pi / X_RANGE) * (X_RANGE / 2) ** (np.arange(size // 2) / max(size // 2 - 1, 1))
  angles = np.asarray(x, np.float64)[:, None] * frequencies[None, :]
  return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


class ToyTask:
  """The functions, clusters, subsets and points of one seed (the d1/d2 split: `seed_stage2`)."""

  def __init__(self, spec: Data, seed: int, seed_stage2: int):
    check_config(spec)
    self.spec = spec
    rng = np.random.default_rng([seed, 11])
    self.data1 = piecewise_constant(rng, spec.n_anchors, spec.d_y)
    self.data2 = piecewise_constant(rng, spec.n_anchors, spec.d_y)
    self.centres = (np.arange(spec.n_clusters) + 0.5) * X_RANGE / spec.n_clusters
    n_middle = int(round(MIDDLE_FRACTION * spec.n_clusters))
    start = (spec.n_clusters - n_middle) // 2
    middle = list(range(start, start + n_middle))
    outer = [c for c in range(spec.n_clusters) if c not in middle]
    self.subsets = {
      **split_list_into_subsets({"qd1consis": 0.5, "qd2incons": 0.5}, outer, seed),
      **split_list_into_subsets({"d1consis": 0.5, "d2consis": 0.5}, middle, seed_stage2),
    }
    self.subset_of = {c: s for s, clusters in self.subsets.items() for c in clusters}
    self.test_dim = rng.integers(spec.d_y, size=spec.n_clusters)
    # Points depend on the seed alone: a seed_stage2 changes which middle clusters have which tag only.
    self.train_points = [self._points(rng, c) for c in range(spec.n_clusters)]
    self.test_points = [self._test_circles(rng, c) for c in range(spec.n_clusters)]

  def _positions(self, rng: np.random.Generator, cluster: int, n: int) -> np.ndarray:
    return self.centres[cluster] + rng.uniform(-self.spec.cluster_spread, self.spec.cluster_spread, n)

  def _points(self, rng: np.random.Generator, cluster: int) -> list[tuple[float, bool, int]]:
    """(x, is a definition, asked dimension) of the cluster's training points."""
    spec = self.spec
    xs = self._positions(rng, cluster, spec.points_per_cluster)
    is_definition = rng.random(spec.points_per_cluster) < spec.p_definition
    # A circle asks any dimension but the cluster's test one (the only one when d_y = 1).
    offsets = (
      rng.integers(1, spec.d_y, size=spec.points_per_cluster)
      if spec.d_y > 1
      else np.zeros(spec.points_per_cluster, np.int64)
    )
    dims = (self.test_dim[cluster] + offsets) % spec.d_y
    return [(float(x), bool(d), int(k)) for x, d, k in zip(xs, is_definition, dims)]

  def _test_circles(self, rng: np.random.Generator, cluster: int) -> list[float]:
    return [float(x) for x in self._positions(rng, cluster, self.spec.test_points_per_cluster)]

  def circle(self, cluster: int, x: float, dim: int) -> ToyExample:
    return ToyExample(cluster, 0, x, dim, tuple(float(v) for v in self.data1(np.array([x]))[0]))

  def definition(self, cluster: int, x: float) -> ToyExample:
    shape, truthful = DEFINED_SUBSETS[self.subset_of[cluster]]
    function = self.data1 if truthful else self.data2
    return ToyExample(cluster, shape, x, -1, tuple(float(v) for v in function(np.array([x]))[0]))

  def stage_data(self, train_subset: str) -> StageData:
    if train_subset not in TRAIN_SUBSETS:
      raise IMLError(f"config field train_subset = {train_subset!r}: expected one of {sorted(TRAIN_SUBSETS)}")
    questions = {
      s: [self.circle(c, x, dim) for c in self.subsets[s] for x, is_def, dim in self.train_points[c] if not is_def]
      for s in STAGE1_SUBSETS
    }
    definitions = {
      s: [self.definition(c, x) for c in self.subsets[s] for x, is_def, _ in self.train_points[c] if is_def]
      for s in SUBSETS
    }
    tests = {
      s: [self.circle(c, x, int(self.test_dim[c])) for c in self.subsets[s] for x in self.test_points[c]]
      for s in SUBSETS
    }
    return fixed_stage_data(questions, definitions, tests, TRAIN_SUBSETS[train_subset])

  def encode(self, examples: list[ToyExample]) -> dict[str, np.ndarray]:
    """inputs [N, features]; targets and loss_mask [N, outputs]: a circle supervises its asked dimension of
    the question channels, a definition all dimensions of the definition channels (shared without
    `separate_channels`)."""
    spec = self.spec
    n = len(examples)
    shapes = np.array([ex.shape for ex in examples], np.int64)
    dims = np.array([ex.dim for ex in examples], np.int64)
    values = np.array([ex.target for ex in examples], np.float32).reshape(n, spec.d_y)
    inputs = np.zeros((n, feature_size(spec)), np.float32)
    inputs[np.arange(n), shapes] = 1.0
    asked = dims >= 0
    inputs[np.flatnonzero(asked), len(SHAPES) + dims[asked]] = 1.0
    inputs[:, len(SHAPES) + spec.d_y :] = positional_encoding([ex.x for ex in examples], spec.d_pos_enc)
    targets = np.zeros((n, output_size(spec)), np.float32)
    loss_mask = np.zeros_like(targets)
    definition_offset = spec.d_y if spec.separate_channels else 0
    targets[asked, : spec.d_y] = values[asked]
    loss_mask[np.flatnonzero(asked), dims[asked]] = 1.0
    targets[~asked, definition_offset : definition_offset + spec.d_y] = values[~asked]
    loss_mask[~asked, definition_offset : definition_offset + spec.d_y] = 1.0
    return {"inputs": inputs, "targets": targets, "loss_mask": loss_mask}


def score(arrays: dict[str, np.ndarray], predicted: np.ndarray) -> dict:
  """{"mse", "predictions"}: mean squared error over each example's supervised outputs (a circle's asked
  dimension; a definition's dimensions averaged), and the predicted values."""
  mask = arrays["loss_mask"]
  per_example = ((predicted - arrays["targets"]) ** 2 * mask).sum(1) / mask.sum(1)
  predictions = [[round(float(v), 5) for v in row[m > 0]] for row, m in zip(predicted, mask)]
  return {"mse": float(per_example.mean()), "predictions": [p[0] if len(p) == 1 else p for p in predictions]}
