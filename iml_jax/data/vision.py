"""Vision IML (docs/study.md §6.1), designed from the poster's schematic since the original code is unknown.

An alias is a 3×3 grid of digit classes, drawn as a 3×3 grid of handwritten digit images; an entity is a
3×3 grid of letters A/B. A definition image carries its tag as a pattern in a band above the grid and its
target is the full entity grid; a QA image has a box around one cell and its target is that cell's letter,
every other cell "—". The model predicts A / B / — for each of the 9 cells. Subsets, tags, derangements and
stages mirror the language experiment: qd1consis (tag 1, consistent), qd2incons (tag 2, another alias's
entity), q (QAs only), d1/d2/d3consis (stage-2 definitions, tested with QAs only).

Each alias's 9 QAs: 6 train / 3 test cells for stage-1 aliases, all 9 test cells for stage-2 aliases. Digit
instances for training images come from 80% of the digit images, test images from the other 20%, so a
test image shows handwriting the model has not seen. Digits: scikit-learn's bundled 8×8 set offline
(`data.digits = "sklearn"`), or MNIST 28×28 through tensorflow-datasets (`"mnist"`; TPU VMs, Colab).
"""

import dataclasses
import functools
import random

import numpy as np

from iml_jax.data.common import (
  Fractions,
  StageData,
  check_fractions,
  derangement,
  fixed_stage_data,
  split_stage_subsets,
)
from iml_jax.errors import IMLError

STAGE1_SUBSETS = ("qd1consis", "qd2incons", "q")
STAGE2_SUBSETS = ("d1consis", "d2consis", "d3consis")
SUBSETS = STAGE1_SUBSETS + STAGE2_SUBSETS
DEFINED_SUBSETS = {
  "qd1consis": (1, True),
  "qd2incons": (2, False),
  "d1consis": (1, True),
  "d2consis": (2, True),
  "d3consis": (3, True),
}
TRAIN_SUBSETS = {
  "full": (STAGE1_SUBSETS, tuple(DEFINED_SUBSETS)),
  "stage1": (STAGE1_SUBSETS, ("qd1consis", "qd2incons")),
  "stage2": ((), STAGE2_SUBSETS),
}
DIGIT_SOURCES = ("sklearn", "mnist")
CELLS, GRID = 9, 3
LETTERS = "AB—"  # classes per cell: A, B, blank
BLANK = 2
TRAIN_CELLS = 6
BAND = 3  # rows above the grid where a definition's tag pattern is drawn
# Tag patterns in the band: period and length of the lit runs (tag 1 dotted, tag 2 dashed, tag 3 solid).
TAG_PATTERNS = {1: (2, 1), 2: (6, 4), 3: (1, 1)}


@dataclasses.dataclass(frozen=True)
class VisionExample:
  alias: int  # index into the task's aliases
  tag: int  # 0: a QA; 1-3: a definition with that tag
  cell: int  # the highlighted cell of a QA; -1 for definitions
  target: tuple[int, ...]  # 9 classes (0 A, 1 B, 2 —)
  pool: str  # "train" or "test": which digit images draw it
  key: int  # with the alias and the pool, picks the digit instances (0: definitions, 1 + cell: QAs)

  @property
  def answer(self) -> str:
    return "".join(LETTERS[t] for t in self.target)

  def described(self) -> dict:
    """What predictions.jsonl records about the example besides its answer."""
    return {"alias": self.alias, "tag": self.tag, "cell": self.cell}


@dataclasses.dataclass(frozen=True)
class Data:
  """`data` of the vision task (configs: config_blocks.vision_data)."""

  digits: str
  num_aliases: int
  fractions: Fractions


def check_config(spec: Data) -> None:
  check_fractions({k: spec.fractions[k] for k in SUBSETS}, "data.fractions")
  if spec.digits not in DIGIT_SOURCES:
    raise IMLError(f"config field data.digits = {spec.digits!r}: expected one of {DIGIT_SOURCES}")
  if not 4 <= spec.num_aliases <= 2**CELLS:
    raise IMLError(
      f"config field data.num_aliases = {spec.num_aliases}: expected 4 .. {2**CELLS} (distinct 3x3 A/B entities)"
    )


@functools.lru_cache(maxsize=2)
def load_digits(source: str) -> tuple[np.ndarray, np.ndarray]:
  """(images [N, S, S] float32 in [0, 1], labels [N]) of the digit source."""
  if source == "sklearn":
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)
  try:
    import tensorflow_datasets as tfds

    images, labels = tfds.as_numpy(tfds.load("mnist", split="train", batch_size=-1, as_supervised=True))
  except Exception as err:  # not installed, or no network to download MNIST
    raise IMLError(
      f"config field data.digits = 'mnist' needs tensorflow-datasets and MNIST ({err}); use "
      "data.digits = 'sklearn' (bundled, offline)"
    ) from None
  return (images[..., 0] / 255.0).astype(np.float32), labels.astype(np.int64)


def image_shape(spec: Data) -> tuple[int, int]:
  size = 8 if spec.digits == "sklearn" else 28
  cell = size + 2  # a 1-pixel frame around every digit, where the QA box is drawn
  return BAND + GRID * cell, GRID * cell


class VisionTask:
  """Aliases (digit grids), their entities (A/B grids), subsets and the digit pools of one seed."""

  def __init__(self, spec: Data, seed: int, seed_stage2: int):
    check_config(spec)
    self.spec, self.seed = spec, seed
    rng = random.Random(seed)
    grids = set()
    while len(grids) < spec.num_aliases:
      grids.add(tuple(rng.randrange(10) for _ in range(CELLS)))
    self.aliases = sorted(grids)
    entities = rng.sample(range(2**CELLS), spec.num_aliases)
    self.entity = [tuple((e >> i) & 1 for i in range(CELLS)) for e in entities]
    names = [f"{i:05d}" for i in range(spec.num_aliases)]
    self.subsets = {
      k: sorted(int(n) for n in v)
      for k, v in split_stage_subsets(names, spec.fractions, STAGE1_SUBSETS, STAGE2_SUBSETS, seed, seed_stage2).items()
    }
    self.defined_entity = list(self.entity)
    inconsistent = self.subsets["qd2incons"]
    if inconsistent:
      for alias, other in zip(inconsistent, derangement(inconsistent, rng)):
        self.defined_entity[alias] = self.entity[other]
    self.train_cells = {a: tuple(sorted(rng.sample(range(CELLS), TRAIN_CELLS))) for a in range(spec.num_aliases)}
    images, labels = load_digits(spec.digits)
    order = np.random.default_rng([seed, 3]).permutation(len(labels))
    cut = int(0.8 * len(order))
    self.images = images
    self.pools = {
      name: [part[labels[part] == d] for d in range(10)]
      for name, part in (("train", order[:cut]), ("test", order[cut:]))
    }

  def qa(self, alias: int, cell: int, pool: str) -> VisionExample:
    target = [BLANK] * CELLS
    target[cell] = self.entity[alias][cell]
    return VisionExample(alias, 0, cell, tuple(target), pool, key=cell + 1)

  def definition(self, subset: str, alias: int) -> VisionExample:
    tag, consistent = DEFINED_SUBSETS[subset]
    entity = self.entity[alias] if consistent else self.defined_entity[alias]
    return VisionExample(alias, tag, -1, entity, "train", key=0)

  def stage_data(self, train_subset: str) -> StageData:
    if train_subset not in TRAIN_SUBSETS:
      raise IMLError(f"config field train_subset = {train_subset!r}: expected one of {sorted(TRAIN_SUBSETS)}")
    definitions = {s: [self.definition(s, a) for a in self.subsets[s]] for s in DEFINED_SUBSETS}
    train_qas = {
      s: [self.qa(a, c, "train") for a in self.subsets[s] for c in self.train_cells[a]] for s in STAGE1_SUBSETS
    }
    test_cells = lambda s, a: (
      [c for c in range(CELLS) if c not in self.train_cells[a]] if s in STAGE1_SUBSETS else range(CELLS)
    )
    tests = {s: [self.qa(a, c, "test") for a in self.subsets[s] for c in test_cells(s, a)] for s in SUBSETS}
    return fixed_stage_data(train_qas, definitions, tests, TRAIN_SUBSETS[train_subset])

  def render(self, example: VisionExample) -> np.ndarray:
    """The example's image [H, W]: digit instances from its pool, the tag band, the QA box."""
    height, width = image_shape(self.spec)
    size = self.images.shape[1]
    cell_size = size + 2
    image = np.zeros((height, width), np.float32)
    rng = np.random.default_rng([self.seed, example.alias, example.key, example.pool == "test"])
    for cell, digit in enumerate(self.aliases[example.alias]):
      pool = self.pools[example.pool][digit]
      top, left = BAND + (cell // GRID) * cell_size + 1, (cell % GRID) * cell_size + 1
      image[top : top + size, left : left + size] = self.images[pool[rng.integers(len(pool))]]
    if example.tag:
      period, lit = TAG_PATTERNS[example.tag]
      image[: BAND - 1, (np.arange(width) % period) < lit] = 1.0
    if example.cell >= 0:
      top, left = BAND + (example.cell // GRID) * cell_size, (example.cell % GRID) * cell_size
      image[top, left : left + cell_size] = image[top + cell_size - 1, left : left + cell_size] = 1.0
      image[top : top + cell_size, left] = image[top : top + cell_size, left + cell_size - 1] = 1.0
    return image

  def encode(self, examples: list[VisionExample]) -> dict[str, np.ndarray]:
    """Arrays a train step or an evaluation takes: inputs (images) [N, H, W, 1], targets [N, 9], loss_mask [N, 9]."""
    images = np.stack([self.render(ex) for ex in examples])[..., None]
    targets = np.array([ex.target for ex in examples], np.int32)
    return {"inputs": images, "targets": targets, "loss_mask": np.ones(targets.shape, np.float32)}


def score(arrays: dict[str, np.ndarray], predicted: np.ndarray) -> dict:
  """{"em", "f1", "predictions"}: EM counts an example right when every cell it asks about (each non-blank
  target cell: one for a QA, nine for a definition) is predicted; F1 is the fraction of those cells right."""
  targets = arrays["targets"]
  asked = targets != BLANK
  right = (predicted == targets) & asked
  return {
    "em": float(np.mean(right.sum(1) == asked.sum(1))),
    "f1": float(np.mean(right.sum(1) / asked.sum(1))),
    "predictions": ["".join(LETTERS[c] for c in row) for row in predicted],
  }
