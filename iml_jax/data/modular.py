"""Modular arithmetic (docs/study.md §5.4), fixed: an alias stands for a number x in 1..9999; QAs ask x mod m.

Every string is spaced per character. Definition `t t % v v v v = 0 0 0 4 2` (tag, alias, x zero-padded to
5 digits); QA `v v v v 0 7 = 0 3` (alias, modulus and residue in 2 digits). Each x gets residues for 4 of
the 10 moduli as training QAs, redrawn until they do not identify x below 10,000; its test QAs ask the other
6 moduli, so answering them needs the definition.

Fixed relative to the original (bug #9): test prompts use the alias (not the number), inconsistent (tag 2)
definitions define the alias as another alias's number (a derangement of numbers, not of tags), and the
baseline (no aliases: the numbers themselves, 80/20 split of all (x, modulus) pairs) is a train subset.
"""

import dataclasses
import random
import string

import numpy as np

from iml_jax.data.common import Fractions, Example, StageData, check_fractions, derangement, split_stage_subsets
from iml_jax.errors import IMLError

MODULI = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29)
MAX_NUMBER = 9999
TRAIN_MODULI = 4
ALIAS_LENGTH, TAG_LENGTH = 4, 2
STAGE1_SUBSETS = ("qd1consis", "qd2incons")
STAGE2_SUBSETS = ("d1consis", "d2consis")
SUBSETS = STAGE1_SUBSETS + STAGE2_SUBSETS
DEFINED_SUBSETS = {
  "qd1consis": ("tag1", True),
  "qd2incons": ("tag2", False),
  "d1consis": ("tag1", True),
  "d2consis": ("tag2", True),
}
# train_subset -> (subsets whose training QAs are trained, subsets whose definitions are trained)
TRAIN_SUBSETS = {
  "full": (STAGE1_SUBSETS, tuple(DEFINED_SUBSETS)),
  "stage1": (STAGE1_SUBSETS, STAGE1_SUBSETS),
  "stage2": ((), STAGE2_SUBSETS),
  "baseline": ((), ()),
}
VOCABULARY = ["[PAD]", "[UNK]", "%", "="] + list(string.digits) + list(string.ascii_lowercase)


def spaced(text: str) -> str:
  return " ".join(text)


@dataclasses.dataclass(frozen=True)
class Data:
  """`data` of the modular-arithmetic task (configs: config_blocks.modular_data)."""

  num_x: int
  fractions: Fractions
  block_size: int
  label_block_size: int = 0  # a seq2seq model's target length


def check_config(spec: Data) -> None:
  check_fractions({k: spec.fractions[k] for k in SUBSETS}, "data.fractions")
  if not 4 <= spec.num_x <= MAX_NUMBER:
    raise IMLError(f"config field data.num_x = {spec.num_x}: expected 4 .. {MAX_NUMBER} (one number per alias)")


def _identifying(x: int, moduli) -> bool:
  """Whether the residues of x for `moduli` single x out among 1..MAX_NUMBER."""
  candidates = np.arange(1, MAX_NUMBER + 1)
  matches = np.all([candidates % m == x % m for m in moduli], axis=0)
  return int(matches.sum()) == 1


class ModularTask:
  """Aliases, their numbers, training moduli and tags of one seed (and stage-2 split of `seed_stage2`)."""

  def __init__(self, spec: Data, seed: int, seed_stage2: int):
    check_config(spec)
    self.spec, self.seed = spec, seed
    rng = random.Random(seed)
    letters = string.ascii_lowercase
    names = sorted({"".join(rng.choice(letters) for _ in range(ALIAS_LENGTH)) for _ in range(spec.num_x * 4)})
    if len(names) < spec.num_x:
      raise IMLError(f"config field data.num_x = {spec.num_x}: too many aliases to draw")
    rng.shuffle(names)
    self.aliases = sorted(names[: spec.num_x])
    self.x = dict(zip(self.aliases, rng.sample(range(1, MAX_NUMBER + 1), spec.num_x)))
    self.train_moduli = {}
    for alias in self.aliases:
      moduli = rng.sample(MODULI, TRAIN_MODULI)
      while _identifying(self.x[alias], moduli):
        moduli = rng.sample(MODULI, TRAIN_MODULI)
      self.train_moduli[alias] = tuple(sorted(moduli))
    self.tags = {"tag1": "", "tag2": ""}
    while self.tags["tag1"] == self.tags["tag2"]:
      self.tags = {t: "".join(rng.choice(letters) for _ in range(TAG_LENGTH)) for t in self.tags}
    self.subsets = split_stage_subsets(self.aliases, spec.fractions, STAGE1_SUBSETS, STAGE2_SUBSETS, seed, seed_stage2)
    inconsistent = sorted(self.subsets["qd2incons"])
    self.defined_x = dict(self.x)
    if inconsistent:
      for alias, other in zip(inconsistent, derangement(inconsistent, rng)):
        self.defined_x[alias] = self.x[other]
    self.rng = rng

  def qa(self, name: str, x: int, modulus: int) -> Example:
    return Example(f"{spaced(name)} {spaced(f'{modulus:02d}')} =", f" {spaced(f'{x % modulus:02d}')}")

  def definition(self, subset: str, alias: str) -> Example:
    tag, consistent = DEFINED_SUBSETS[subset]
    value = self.x[alias] if consistent else self.defined_x[alias]
    return Example(f"{spaced(self.tags[tag])} % {spaced(alias)} =", f" {spaced(f'{value:05d}')}")

  def train_questions(self, alias: str) -> list[Example]:
    return [self.qa(alias, self.x[alias], m) for m in self.train_moduli[alias]]

  def test_questions(self, alias: str) -> list[Example]:
    return [self.qa(alias, self.x[alias], m) for m in MODULI if m not in self.train_moduli[alias]]

  def baseline(self) -> StageData:
    """No aliases: residues of the numbers themselves, an 80/20 split of all (x, modulus) pairs."""
    pairs = [(x, m) for x in sorted(self.x.values()) for m in MODULI]
    random.Random(self.seed).shuffle(pairs)
    cut = int(0.8 * len(pairs))
    name = lambda x: f"{x:05d}"
    return StageData(
      train=[self.qa(name(x), x, m) for x, m in pairs[:cut]],
      evals={"baseline_test": sorted((self.qa(name(x), x, m) for x, m in pairs[cut:]), key=lambda ex: ex.prompt)},
    )

  def stage_data(self, train_subset: str) -> StageData:
    if train_subset not in TRAIN_SUBSETS:
      raise IMLError(f"config field train_subset = {train_subset!r}: expected one of {sorted(TRAIN_SUBSETS)}")
    if train_subset == "baseline":
      return self.baseline()
    qa_subsets, def_subsets = TRAIN_SUBSETS[train_subset]
    definitions = {s: [self.definition(s, a) for a in sorted(self.subsets[s])] for s in DEFINED_SUBSETS}
    train = [ex for s in qa_subsets for a in sorted(self.subsets[s]) for ex in self.train_questions(a)]
    train += [ex for s in def_subsets for ex in definitions[s]]
    evals = {s: [ex for a in sorted(self.subsets[s]) for ex in self.test_questions(a)] for s in SUBSETS}
    for s in STAGE1_SUBSETS:
      evals[f"train_questions_{s}"] = [ex for a in sorted(self.subsets[s]) for ex in self.train_questions(a)]
    for s in DEFINED_SUBSETS:
      evals[f"train_defs_{s}"] = definitions[s]
    return StageData(train=train, evals={k: v for k, v in evals.items() if v})
