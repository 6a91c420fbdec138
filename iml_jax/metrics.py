"""Exact match and F1 with the study's normalisation (docs/study.md §8.2), and which score a task reports.

F1 uses token *sets* (not SQuAD's multisets), as the study's `src/metrics.py` does (bug #19: reproduce).
"""

import dataclasses
import functools
import re
import string


@dataclasses.dataclass(frozen=True)
class Score:
  """What a task's evaluation records per set (`fields`) and which field the report compares (`name`)."""

  name: str
  higher_is_better: bool
  fields: tuple[str, ...]
  upper_bound: float | None  # plots clip confidence bands to [0, upper_bound]

  @property
  def label(self) -> str:
    return self.name.upper()


EXACT_MATCH = Score("em", True, ("em", "f1"), 1.0)
SQUARED_ERROR = Score("mse", False, ("mse",), None)  # the 1-D toy's regression

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


# An evaluation scores the same few answers ("true", "false", the numbers) again and again.
@functools.lru_cache(maxsize=1 << 16)
def normalize_answer(text: str) -> str:
  """Lowercase, drop punctuation, drop articles, collapse whitespace (in this order)."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in _PUNCTUATION)
  text = _ARTICLES.sub(" ", text)
  return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
  return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in gold.split(";"))


def _set_f1(prediction: str, gold: str) -> float:
  pred_tokens = set(normalize_answer(prediction).split())
  gold_tokens = set(normalize_answer(gold).split())
  if not pred_tokens or not gold_tokens:
    return float(pred_tokens == gold_tokens)
  common = pred_tokens & gold_tokens
  if not common:
    return 0.0
  precision = len(common) / len(pred_tokens)
  recall = len(common) / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def f1(prediction: str, gold: str) -> float:
  return max(_set_f1(prediction, g) for g in gold.split(";"))


def mean_em_f1(predictions, golds) -> tuple[float, float]:
  if len(predictions) != len(golds) or not golds:
    raise ValueError(f"need equally many predictions and golds, got {len(predictions)} and {len(golds)}")
  em = sum(exact_match(p, g) for p, g in zip(predictions, golds)) / len(golds)
  f = sum(f1(p, g) for p, g in zip(predictions, golds)) / len(golds)
  return em, f
