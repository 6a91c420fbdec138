"""Pieces shared by the study's generators: examples, the subset split, aliases, derangements."""

import dataclasses
import random
import string
from typing import Callable, Mapping, Sequence

from iml_jax.errors import IMLError

Fractions = Mapping[str, float]  # a subset name -> its share of the entities or aliases


@dataclasses.dataclass(frozen=True)
class Example:
  """One text: `prompt + completion`. Evaluation feeds `prompt` and compares with `completion`."""

  prompt: str
  completion: str

  @property
  def text(self) -> str:
    return self.prompt + self.completion

  @property
  def answer(self) -> str:
    return self.completion.strip()

  def described(self) -> dict:
    """What predictions.jsonl records about the example besides its answer."""
    return {"prompt": self.prompt}


@dataclasses.dataclass
class StageData:
  """What one stage trains on and what it is evaluated on.

  `train_for_epoch(epoch)` returns the epoch's training examples (same count every epoch); it
  redraws rule-generated questions when the generator is asked to, else returns `train` itself.
  """

  train: list[Example]
  evals: dict[str, list[Example]]
  redraw: Callable[[int], list[Example]] | None = None

  def train_for_epoch(self, epoch: int) -> list[Example]:
    return self.redraw(epoch) if self.redraw is not None else self.train


def fixed_stage_data(
  questions: dict[str, list],
  definitions: dict[str, list],
  tests: dict[str, list],
  trained: tuple[Sequence[str], Sequence[str]],
) -> StageData:
  """A stage of fixed examples: it trains the questions and definitions of the `trained` (question subsets,
  definition subsets) and is evaluated on each subset's tests and on what each subset trains
  (`train_questions_<s>`, `train_defs_<s>`); empty sets are left out."""
  qa_subsets, def_subsets = trained
  evals = {
    **tests,
    **{f"train_questions_{s}": v for s, v in questions.items()},
    **{f"train_defs_{s}": v for s, v in definitions.items()},
  }
  train = [ex for s in qa_subsets for ex in questions[s]] + [ex for s in def_subsets for ex in definitions[s]]
  return StageData(train=train, evals={k: v for k, v in evals.items() if v})


def check_fractions(fractions: dict[str, float], field: str) -> None:
  for key, value in fractions.items():
    if value < 0:
      raise IMLError(f"config field {field}.{key} = {value}: fractions must be >= 0")
  total = sum(fractions.values())
  if abs(total - 1.0) > 1e-6:
    listed = ", ".join(f"{k}={v}" for k, v in fractions.items() if v)
    raise IMLError(f"config fields {field}.* sum to {total:.6g} ({listed}); they must sum to 1")


def split_list_into_subsets(fractions: dict[str, float], items: Sequence, seed: int) -> dict[str, list]:
  """The study's split (docs/study.md §3.4): sort, shuffle with Random(seed), cut contiguous slices in
  the order of `fractions`, each round(n·frac) long; the rounding surplus goes to the
  alphabetically last key."""
  total = sum(fractions.values())
  ordered = sorted(items)
  random.Random(seed).shuffle(ordered)
  n = len(ordered)
  sizes = {key: round(n * frac / total) for key, frac in fractions.items()}
  sizes[max(fractions)] += n - sum(sizes.values())
  subsets, start = {}, 0
  for key in fractions:
    subsets[key] = ordered[start : start + sizes[key]]
    start += sizes[key]
  return subsets


def split_stage_subsets(
  items: Sequence, fractions, stage1_keys: Sequence[str], stage2_keys: Sequence[str], seed: int, seed_stage2: int
) -> dict[str, list]:
  """Stage-1 pools cut by `seed` (stage-2 pool last), then the stage-2 pool re-cut by `seed_stage2`."""
  stage1 = {k: fractions[k] for k in stage1_keys}
  stage1["stage2_combined"] = sum(fractions[k] for k in stage2_keys)
  subsets = split_list_into_subsets(stage1, items, seed)
  combined = subsets.pop("stage2_combined")
  stage2 = {k: fractions[k] for k in stage2_keys}
  subsets.update(split_list_into_subsets(stage2, combined, seed_stage2) if combined else {k: [] for k in stage2})
  return subsets


def generate_variable_names(n: int, length: int, rng: random.Random, wrap: bool = True) -> list[str]:
  """n unique random lowercase strings, drawn, sorted, then shuffled with `rng` (docs/study.md §3.5)."""
  if n > len(string.ascii_lowercase) ** length:
    raise IMLError(f"cannot draw {n} distinct names of {length} letters")
  names: set[str] = set()
  while len(names) < n:
    names.add("".join(rng.choice(string.ascii_lowercase) for _ in range(length)))
  ordered = sorted(names)
  rng.shuffle(ordered)
  return [f"<|{name}|>" for name in ordered] if wrap else ordered


def derangement(items: Sequence, rng: random.Random) -> list:
  """A permutation of `items` with no element left in its place: reshuffle until none is fixed."""
  if len(items) < 2:
    raise IMLError(f"an inconsistent-definition subset needs at least 2 entities to swap, got {len(items)}")
  shuffled = list(items)
  while any(a == b for a, b in zip(shuffled, items)):
    rng.shuffle(shuffled)
  return shuffled
