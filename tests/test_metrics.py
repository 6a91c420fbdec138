import pytest

from iml_jax import metrics


@pytest.mark.parametrize(
  "text, expected",
  [
    ("The Beatles!", "beatles"),
    ("  a  19   century ", "19 century"),
    ("An apple, the pear", "apple pear"),
    ("Côte d'Ivoire", "côte divoire"),
    ("another theme", "another theme"),  # articles only as whole words
  ],
)
def test_normalize_answer(text, expected):
  assert metrics.normalize_answer(text) == expected


def test_exact_match_normalises_and_takes_best_gold():
  assert metrics.exact_match("the 1920s.", "1920s") == 1.0
  assert metrics.exact_match("1930s", "1920s") == 0.0
  assert metrics.exact_match("France", "Germany;France") == 1.0


def test_f1_uses_token_sets_not_multisets():
  # SQuAD's multiset F1 would give 2/3 here; the study's set F1 counts "new" once on each side.
  assert metrics.f1("new new york", "new york") == pytest.approx(1.0)
  assert metrics.f1("new york city", "new york") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
  assert metrics.f1("paris", "london") == 0.0


def test_f1_empty_cases():
  assert metrics.f1("", "") == 1.0
  assert metrics.f1("the", "") == 1.0  # both normalise to empty
  assert metrics.f1("", "paris") == 0.0


def test_mean_em_f1():
  em, f1 = metrics.mean_em_f1(["true", "false", "True"], ["true", "true", "true"])
  assert em == pytest.approx(2 / 3) and f1 == pytest.approx(2 / 3)
  with pytest.raises(ValueError):
    metrics.mean_em_f1(["a"], [])


def test_f1_is_the_harmonic_mean_of_set_precision_and_recall():
  assert metrics.f1("x y", "x z w") == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
  assert metrics.f1("paris", "london;paris") == 1.0  # the best of the golds


def test_mean_em_f1_refuses_unequal_or_empty_lists():
  with pytest.raises(ValueError, match="need equally many predictions and golds, got 1 and 2"):
    metrics.mean_em_f1(["a"], ["a", "b"])
  with pytest.raises(ValueError, match="got 0 and 0"):
    metrics.mean_em_f1([], [])
