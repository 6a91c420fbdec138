"""Numeric set inclusion (docs/study.md §5.1–5.2): "is x in this set of numbers?" about aliased numbers.

An alias `abc` stands for a number x. QA: `abc % 86 97 48 19 = true`; definition: `define1 abc % 63`.
Two options beyond the study, needed to show IML at CPU scale (docs/cpu_scale.md): training questions can be
redrawn from their rule every epoch (`redraw_train_questions`), and one token per alias.
"""

import dataclasses
import random
import string

import numpy as np

from iml_jax.data.common import (
  Fractions,
  Example,
  StageData,
  check_fractions,
  generate_variable_names,
  split_stage_subsets,
)
from iml_jax.errors import IMLError

# qd1incons / qd2consis weaken the tag–consistency correlation α (docs/study.md §4.5); 0 by default.
STAGE1_SUBSETS = ("qd1consis", "qd1incons", "qd2consis", "qd2incons", "q")
STAGE2_SUBSETS = ("d1consis", "d2consis", "d3consis")
SUBSETS = STAGE1_SUBSETS + STAGE2_SUBSETS
# subset -> (tag, defined as the true number?)
DEFINED_SUBSETS = {
  "qd1consis": ("define1", True),
  "qd1incons": ("define1", False),
  "qd2consis": ("define2", True),
  "qd2incons": ("define2", False),
  "d1consis": ("define1", True),
  "d2consis": ("define2", True),
  "d3consis": ("define3", True),
}
# train_subset -> (subsets whose rule-generated QAs are trained, subsets whose definitions are trained)
TRAIN_SUBSETS = {
  "full": (STAGE1_SUBSETS, tuple(DEFINED_SUBSETS)),
  "stage1": (STAGE1_SUBSETS, ("qd1consis", "qd1incons", "qd2consis", "qd2incons")),
  "stage2": ((), STAGE2_SUBSETS),
  "q_only": (("q",), ()),
  "stage1_excl_q": (
    ("qd1consis", "qd1incons", "qd2consis", "qd2incons"),
    ("qd1consis", "qd1incons", "qd2consis", "qd2incons"),
  ),
}
# The study's word-level vocabulary, in its order (135 tokens), before any alias tokens.
BASE_VOCABULARY = (
  ["[PAD]", "[UNK]", "=", "%", "true", "false", "define1", "define2", "define3"]
  + [str(i) for i in range(100)]
  + list(string.ascii_lowercase)
)
ALIAS_LENGTH = 3
CHANCE = 0.5  # the EM of a coin flip: half of every test set's questions are true (`tasks.chance_level`)


def all_alias_strings() -> list[str]:
  letters = string.ascii_lowercase
  return [a + b + c for a in letters for b in letters for c in letters]


@dataclasses.dataclass(frozen=True)
class Data:
  """`data` of the set-inclusion task (configs: config_blocks.numeric_data)."""

  num_x: int
  n_nums: int
  n_intersection: int
  n_qs: int
  p_label_flip: float
  max_x: int
  separate_token_per_var: bool
  all_alias_tokens: bool
  redraw_train_questions: bool
  fractions: Fractions
  block_size: int
  label_block_size: int = 0  # a seq2seq model's target length


def check_config(spec: Data) -> None:
  check_fractions({k: spec.fractions[k] for k in SUBSETS}, "data.fractions")
  if not 1 <= spec.n_intersection <= spec.n_nums < spec.max_x:
    raise IMLError(
      f"config fields data.n_intersection={spec.n_intersection}, data.n_nums={spec.n_nums}, "
      f"data.max_x={spec.max_x}: need 1 <= n_intersection <= n_nums < max_x"
    )
  if spec.max_x > 100:
    raise IMLError(f"config field data.max_x = {spec.max_x}: the vocabulary has the numbers 0..99 only")
  if spec.n_qs % 4 or spec.n_qs <= 0:
    raise IMLError(f"config field data.n_qs = {spec.n_qs}: expected a positive multiple of 4")
  if not 0 <= spec.p_label_flip <= 1:
    raise IMLError(f"config field data.p_label_flip = {spec.p_label_flip}: expected a probability")


class NumericTask:
  """The aliases, their numbers and all fixed questions of one seed."""

  def __init__(self, spec: Data, seed: int, seed_stage2: int):
    check_config(spec)
    self.spec, self.seed = spec, seed
    rng = random.Random(seed)
    self.aliases = generate_variable_names(spec.num_x, ALIAS_LENGTH, rng, wrap=False)
    subsets = split_stage_subsets(self.aliases, spec.fractions, STAGE1_SUBSETS, STAGE2_SUBSETS, seed, seed_stage2)
    self.subsets = subsets
    # Number facts per alias, in sorted-alias order, fixed by the seed alone.
    self.order = sorted(self.aliases)
    self.index = {a: i for i, a in enumerate(self.order)}
    np_rng = np.random.default_rng([seed, 5])
    shuffled = np_rng.permuted(np.tile(np.arange(spec.max_x), (spec.num_x, 1)), axis=1)
    self.intersection = shuffled[:, : spec.n_intersection]
    self.x = shuffled[:, 0]
    offset = np_rng.integers(1, spec.max_x, size=spec.num_x)
    self.x_false = (self.x + offset) % spec.max_x
    fixed = self._questions(np.random.default_rng([seed, 6]), self.order)
    self.train_questions = {a: fixed[0][i] for i, a in enumerate(self.order)}
    self.test_questions = {a: fixed[1][i] for i, a in enumerate(self.order)}

  def alias_text(self, alias: str) -> str:
    return alias if self.spec.separate_token_per_var else " ".join(alias)

  def vocabulary(self) -> list[str]:
    if not self.spec.separate_token_per_var:
      return list(BASE_VOCABULARY)
    extra = all_alias_strings() if self.spec.all_alias_tokens else sorted(self.aliases)
    return list(BASE_VOCABULARY) + extra

  def alias_tokens(self) -> list[str]:
    """Tokens that spell aliases: the alias tokens, or the letters when aliases are spelt out."""
    return sorted(self.aliases) if self.spec.separate_token_per_var else list(string.ascii_lowercase)

  def _qa(self, alias: str, numbers: list[int], label: bool) -> Example:
    return Example(f"{self.alias_text(alias)} % {' '.join(map(str, numbers))} =", " true" if label else " false")

  def _questions(self, rng: np.random.Generator, aliases: list[str], with_test: bool = True):
    """(train, test) questions for `aliases`, drawn from the rule with `rng` (docs/study.md §5.1); test is None
    unless `with_test` (its numbers are drawn either way: the label flips come after them in `rng`'s stream)."""
    spec = self.spec
    rows = np.array([self.index[a] for a in aliases], dtype=np.int64)
    per_group = spec.n_qs // 4
    numbers = np.arange(spec.max_x)
    in_intersection = (numbers[None, :, None] == self.intersection[rows][:, None, :]).any(-1)
    is_x = numbers[None, :] == self.x[rows][:, None]

    def draw(excluded, k):
      keys = rng.random((len(rows), per_group, spec.max_x))
      keys = np.where(excluded[:, None, :], 2.0, keys)
      return np.argsort(keys, axis=-1)[..., :k]

    inter = np.broadcast_to(self.intersection[rows][:, None, :], (len(rows), per_group, spec.n_intersection))
    train_true = rng.permuted(
      np.concatenate([draw(in_intersection, spec.n_nums - spec.n_intersection), inter], axis=-1), axis=-1
    )
    train_false = draw(in_intersection, spec.n_nums)
    x_column = np.broadcast_to(self.x[rows][:, None, None], (len(rows), per_group, 1))
    test_true = rng.permuted(np.concatenate([draw(is_x, spec.n_nums - 1), x_column], axis=-1), axis=-1)
    test_false = draw(is_x, spec.n_nums)
    flipped = rng.random((len(rows), per_group)) < spec.p_label_flip  # only true -> false flips
    # Python ints format several times faster than NumPy scalars: this runs every epoch when questions are redrawn.
    train_true, train_false, test_true, test_false, flipped = (
      a.tolist() for a in (train_true, train_false, test_true, test_false, flipped)
    )
    train = [
      [self._qa(alias, q, not flip) for q, flip in zip(train_true[i], flipped[i])]
      + [self._qa(alias, q, False) for q in train_false[i]]
      for i, alias in enumerate(aliases)
    ]
    if not with_test:
      return train, None
    test = [
      [self._qa(alias, q, True) for q in test_true[i]] + [self._qa(alias, q, False) for q in test_false[i]]
      for i, alias in enumerate(aliases)
    ]
    return train, test

  def definition(self, subset: str, alias: str) -> Example:
    tag, true_value = DEFINED_SUBSETS[subset]
    i = self.index[alias]
    value = self.x[i] if true_value else self.x_false[i]
    return Example(f"{tag} {self.alias_text(alias)} %", f" {value}")

  def stage_data(self, train_subset: str, redraw_key: int) -> StageData:
    """Training examples and evaluation sets; `redraw_key` separates the stages' redraw streams."""
    if train_subset not in TRAIN_SUBSETS:
      raise IMLError(f"config field train_subset = {train_subset!r}: expected one of {sorted(TRAIN_SUBSETS)}")
    qa_subsets, def_subsets = TRAIN_SUBSETS[train_subset]
    qa_aliases = sorted(a for s in qa_subsets for a in self.subsets[s])
    definitions = {s: [self.definition(s, a) for a in sorted(self.subsets[s])] for s in DEFINED_SUBSETS}
    trained_defs = [ex for s in def_subsets for ex in definitions[s]]
    train = [ex for a in qa_aliases for ex in self.train_questions[a]] + trained_defs
    evals = {s: [ex for a in sorted(self.subsets[s]) for ex in self.test_questions[a]] for s in SUBSETS}
    for s in STAGE1_SUBSETS:
      evals[f"train_questions_{s}"] = [ex for a in sorted(self.subsets[s]) for ex in self.train_questions[a]]
    for s in DEFINED_SUBSETS:
      evals[f"train_defs_{s}"] = definitions[s]
    evals = {k: v for k, v in evals.items() if v}

    def redrawn(epoch: int) -> list[Example]:
      fresh, _ = self._questions(np.random.default_rng([self.seed, 7, redraw_key, epoch]), qa_aliases, with_test=False)
      return [ex for questions in fresh for ex in questions] + trained_defs

    redraw = redrawn if self.spec.redraw_train_questions and qa_aliases else None
    return StageData(train=train, evals=evals, redraw=redraw)
