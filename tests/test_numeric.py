import subprocess
import sys

import pytest

from iml_jax import config_blocks as blocks
from iml_jax.data import common, numeric
from iml_jax.data.tokenization import word_level_tokenizer
from iml_jax.errors import IMLError
from conftest import shared_per_module


def _parse(example):
  words = example.text.split()
  return words[0], [int(w) for w in words[2:-2]], words[-1] == "true"


@pytest.fixture(scope=shared_per_module)
def task70m():
  return numeric.NumericTask(blocks.numeric_data(), seed=0, seed_stage2=0)


def test_study_sizes_for_the_70m_config(task70m):
  stage1 = task70m.stage_data("stage1", redraw_key=0)
  assert len(stage1.train) == 83200  # 6,400 aliases × 12 train QAs + 6,400 definitions
  assert len(task70m.stage_data("stage2", redraw_key=1).train) == 1600
  assert all(len(v) == 12 * 800 for k, v in stage1.evals.items() if k in ("d1consis", "d2consis"))


def test_vocabulary_sizes(task70m):
  assert len(numeric.BASE_VOCABULARY) == 135
  assert len(task70m.vocabulary()) == 17711
  small = numeric.NumericTask(blocks.numeric_data(num_x=100, all_alias_tokens=False), 0, 0)
  assert len(small.vocabulary()) == 235
  no_shared_tokens = blocks.numeric_data(num_x=100, separate_token_per_var=False)
  assert len(numeric.NumericTask(no_shared_tokens, 0, 0).vocabulary()) == 135


def test_questions_follow_the_rule(task70m):
  cfg = task70m.spec
  for alias in task70m.order[:200]:
    i = task70m.index[alias]
    x, inter = task70m.x[i], set(task70m.intersection[i])
    for ex in task70m.train_questions[alias]:
      name, numbers, label = _parse(ex)
      assert name == alias and len(numbers) == cfg.n_nums == len(set(numbers))
      assert label == inter.issubset(numbers)
      assert all(0 <= n < cfg.max_x for n in numbers)
    for ex in task70m.test_questions[alias]:
      _, numbers, label = _parse(ex)
      assert label == (x in numbers)
      assert len(numbers) == cfg.n_nums == len(set(numbers)) and all(0 <= n < cfg.max_x for n in numbers)
    assert sum(_parse(ex)[2] for ex in task70m.test_questions[alias]) == cfg.n_qs // 4


def test_definitions_true_and_false_values(task70m):
  for subset, (tag, truthful) in numeric.DEFINED_SUBSETS.items():
    for alias in task70m.subsets[subset][:50]:
      ex = task70m.definition(subset, alias)
      i = task70m.index[alias]
      assert ex.prompt == f"{tag} {alias} %"
      assert int(ex.answer) == (task70m.x[i] if truthful else task70m.x_false[i])
      assert truthful or task70m.x_false[i] != task70m.x[i]


def test_alpha_subsets_split_exactly_with_their_tags_and_truth():
  cfg = blocks.numeric_data(num_x=1000, fractions=blocks.numeric_alpha_fractions(0.75))
  task = numeric.NumericTask(cfg, seed=3, seed_stage2=0)
  sizes = {k: len(v) for k, v in task.subsets.items()}
  assert sizes == {
    "qd1consis": 300,
    "qd1incons": 100,
    "qd2consis": 100,
    "qd2incons": 300,
    "q": 0,
    "d1consis": 100,
    "d2consis": 100,
    "d3consis": 0,
  }
  stage1 = task.stage_data("stage1", redraw_key=0)
  definitions = [ex for ex in stage1.train if ex.prompt.startswith("define")]
  assert len(definitions) == 800
  for subset, tag, truthful in (
    ("qd1consis", "define1", True),
    ("qd1incons", "define1", False),
    ("qd2consis", "define2", True),
    ("qd2incons", "define2", False),
  ):
    for alias in task.subsets[subset]:
      i = task.index[alias]
      assert task.definition(subset, alias) in definitions
      assert task.definition(subset, alias).prompt.startswith(tag)
      assert (int(task.definition(subset, alias).answer) == task.x[i]) == truthful


def test_zero_alpha_subsets_leave_the_split_unchanged():
  """Adding qd1incons / qd2consis at fraction 0 keeps every earlier run's split (and result)."""
  cfg = blocks.numeric_data(num_x=1000)
  task = numeric.NumericTask(cfg, seed=5, seed_stage2=2)
  three_pools = common.split_stage_subsets(
    task.aliases, cfg.fractions, ("qd1consis", "qd2incons", "q"), numeric.STAGE2_SUBSETS, 5, 2
  )
  assert {k: v for k, v in task.subsets.items() if k not in ("qd1incons", "qd2consis")} == three_pools


def test_spelled_aliases_and_label_flips():
  task = numeric.NumericTask(blocks.numeric_data(num_x=200, separate_token_per_var=False, p_label_flip=1.0), 0, 0)
  alias = task.subsets["qd1consis"][0]
  assert task.definition("qd1consis", alias).prompt == f"define1 {' '.join(alias)} %"
  # With p_label_flip 1 every training question is labelled false; test questions are not flipped.
  assert all(ex.answer == "false" for ex in task.train_questions[alias])
  assert sum(ex.answer == "true" for ex in task.test_questions[alias]) == 6


def test_redraw_gives_fresh_questions_every_epoch_same_count():
  task = numeric.NumericTask(blocks.numeric_data(num_x=100, n_nums=4, redraw_train_questions=True), 0, 0)
  data = task.stage_data("stage1", redraw_key=0)
  epoch0, epoch1 = data.train_for_epoch(0), data.train_for_epoch(1)
  assert len(epoch0) == len(epoch1) == len(data.train)
  assert [e.text for e in epoch0] != [e.text for e in epoch1]
  assert [e.text for e in epoch0] == [e.text for e in data.train_for_epoch(0)]
  assert epoch0[-80:] == epoch1[-80:]  # definitions are not redrawn
  for ex in epoch1[:-80]:
    alias, numbers, label = _parse(ex)
    assert label == (task.x[task.index[alias]] in numbers)


def test_tokenizer_one_token_per_alias(task70m):
  tokenizer = word_level_tokenizer(task70m.vocabulary())
  ex = task70m.train_questions[task70m.order[0]][0]
  ids = tokenizer.encode([ex.text])[0]
  assert len(ids) == 2 + task70m.spec.n_nums + 2
  assert tokenizer.decode(ids) == ex.text
  assert tokenizer.token_ids(task70m.alias_tokens()[:3]).shape == (3,)


@pytest.mark.parametrize(
  "field, value", [("n_qs", 10), ("n_qs", 0), ("n_nums", 120), ("p_label_flip", 2.0), ("max_x", 150), ("max_x", 101)]
)
def test_bad_numeric_config(field, value):
  with pytest.raises(IMLError, match=f"data.{field}"):
    numeric.check_config(blocks.numeric_data(**{field: value}))


def test_numeric_config_boundaries_and_messages():
  numeric.check_config(blocks.numeric_data(n_intersection=4, n_nums=4, max_x=100, n_qs=4))  # every bound reached
  with pytest.raises(IMLError, match=r"data.n_intersection=1, data.n_nums=99, data.max_x=99: need 1 <= "):
    numeric.check_config(blocks.numeric_data(n_nums=99, max_x=99))
  with pytest.raises(IMLError, match=r"config field data.max_x = 101: the vocabulary has the numbers 0..99 only"):
    numeric.check_config(blocks.numeric_data(max_x=101))
  with pytest.raises(IMLError, match=r"config fields data.fractions.\* sum to"):
    numeric.check_config(blocks.numeric_data(fractions=dict(numeric_fractions(), q=0.5)))
  with pytest.raises(IMLError, match=r"config field train_subset = 'nope': expected one of \['full', "):
    numeric.NumericTask(blocks.numeric_data(num_x=40), 0, 0).stage_data("nope", redraw_key=0)


def numeric_fractions() -> dict:
  return dict(blocks.numeric_data().fractions)


# The data of seed 0 (stage-2 seed 1) as this code draws it, redrawn or fixed: a change to any random stream, subset
# or eval set shows here (update the digests only for a deliberate change of the data, and say so).
PINNED_DIGESTS = {
  True: "1e8f989f276f5331f27b400732cc576d71c0307b14175df30b8bf829f60b0996",
  False: "87396056a5b723e308fc29e66a116503c1adc5291f7ace48caa86edef06936d7",
}


@pytest.mark.parametrize("redraw", [True, False])
def test_a_seeds_data_is_pinned_byte_for_byte(redraw):
  import hashlib

  digests = set()
  for _ in range(2):  # and drawn the same every time in this process
    task = numeric.NumericTask(blocks.numeric_data(num_x=300, redraw_train_questions=redraw), 0, 1)
    data = task.stage_data("stage1", redraw_key=0)
    if not redraw:
      assert data.train_for_epoch(3) is data.train
    lines = [ex.text for ex in data.train_for_epoch(3)] + [
      k + ex.text for k, v in sorted(data.evals.items()) for ex in v
    ]
    digests.add(hashlib.sha256("\n".join(lines).encode()).hexdigest())
  assert digests == {PINNED_DIGESTS[redraw]}


_HASH_SCRIPT = """
import hashlib, sys
from iml_jax import config_blocks as blocks
from iml_jax.data import numeric
task = numeric.NumericTask(blocks.numeric_data(num_x=300, redraw_train_questions=True), int(sys.argv[1]), 1)
data = task.stage_data('stage1', redraw_key=0)
lines = [ex.text for ex in data.train_for_epoch(3)] + [k + ex.text for k, v in sorted(data.evals.items()) for ex in v]
print(hashlib.sha256('\\n'.join(lines).encode()).hexdigest())
"""


def test_datasets_identical_across_processes():
  digests = {
    seed: {
      subprocess.run(
        [sys.executable, "-c", _HASH_SCRIPT, str(seed)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": str(h), "PATH": ""},
      ).stdout
      for h in (1, 2)
    }
    for seed in (0, 1)
  }
  assert all(len(d) == 1 for d in digests.values()) and digests[0] != digests[1]


def test_alias_tokens_are_the_aliases_or_the_letters_that_spell_them():
  one_token = numeric.NumericTask(blocks.numeric_data(num_x=40), seed=0, seed_stage2=0)
  assert one_token.alias_tokens() == sorted(one_token.aliases)
  spelt = numeric.NumericTask(blocks.numeric_data(num_x=40, separate_token_per_var=False, all_alias_tokens=False), 0, 0)
  assert spelt.alias_tokens() == list("abcdefghijklmnopqrstuvwxyz")
