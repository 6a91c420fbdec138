import collections
import re
import subprocess
import sys

import pytest

from iml_jax import config_blocks as blocks
from iml_jax import study_settings
from iml_jax.data import common, define, definitions, entities
from iml_jax.errors import IMLError
from conftest import shared_per_module

NO_D3, GRAD_ALIGNMENT = study_settings.NO_D3, study_settings.ALIGNMENT


@pytest.fixture(scope=shared_per_module)
def kb4000():
  return entities.synthetic_knowledge_base(4000, seed=0)


def _counts(kb, fractions, seed=0, seed_stage2=0):
  names = sorted(e.name for e in kb)
  subsets = common.split_stage_subsets(
    names, fractions, define.STAGE1_SUBSETS, define.STAGE2_SUBSETS, seed, seed_stage2
  )
  return {k: len(v) for k, v in subsets.items()}


@pytest.mark.parametrize(
  "fractions, expected",
  [
    (
      blocks.define_data().fractions.to_dict(),
      dict(
        q_no_replacement_baseline=400,
        qd1consis=1000,
        qd2incons=1000,
        q=400,
        d1consis=320,
        d2consis=320,
        d3consis=320,
        no_qd_baseline=240,
      ),
    ),
    (
      NO_D3,
      dict(
        q_no_replacement_baseline=400,
        qd1consis=1000,
        qd2incons=1000,
        q=400,
        d1consis=400,
        d2consis=400,
        d3consis=0,
        no_qd_baseline=400,
      ),
    ),
    (
      GRAD_ALIGNMENT,
      dict(
        q_no_replacement_baseline=480,
        qd1consis=1000,
        qd2incons=1000,
        q=400,
        d1consis=400,
        d2consis=400,
        d3consis=0,
        no_qd_baseline=320,
      ),
    ),
  ],
)
def test_entity_counts_match_the_study(kb4000, fractions, expected):
  counts = _counts(kb4000, fractions)
  assert {k: v for k, v in counts.items() if k in expected} == expected
  assert sum(counts.values()) == 4000


def test_trex_counts_and_rounding_surplus():
  names = [f"work {i:05d}" for i in range(6900)]
  fractions = blocks.define_data().fractions.to_dict()
  subsets = common.split_stage_subsets(names, fractions, define.STAGE1_SUBSETS, define.STAGE2_SUBSETS, 0, 0)
  counts = [
    len(subsets[k])
    for k in (
      "q_no_replacement_baseline",
      "qd1consis",
      "qd2incons",
      "q",
      "d1consis",
      "d2consis",
      "d3consis",
      "no_qd_baseline",
    )
  ]
  assert counts == [690, 1725, 1725, 690, 552, 552, 552, 414]
  # 10 items in thirds: 3 + 3 + 3, the surplus goes to the alphabetically last key.
  split = common.split_list_into_subsets({"b": 1 / 3, "c": 1 / 3, "a": 1 / 3}, list(range(10)), seed=0)
  assert [len(split[k]) for k in "abc"] == [3, 3, 4]


@pytest.fixture(scope=shared_per_module)
def main_data(kb4000):
  data_cfg = blocks.define_data(entity_association_test_sets=True, letter_test_sets=True)
  return (
    data_cfg,
    define.build_define_data(kb4000, data_cfg, seed=0, seed_stage2=0, train_subset="stage1"),
    define.build_define_data(kb4000, data_cfg, seed=0, seed_stage2=0, train_subset="stage2"),
  )


def test_main_config_sizes(main_data):
  _, stage1, stage2 = main_data
  assert len(stage1.train) == 16000
  assert len(stage2.train) == 960
  sizes = {
    k: len(stage1.evals[k])
    for k in (
      "d1consis",
      "d2consis",
      "d3consis",
      "no_qd_baseline",
      "qd1consis",
      "qd2incons",
      "q",
      "q_no_replacement_baseline",
    )
  }
  assert sizes == dict(
    d1consis=1920,
    d2consis=1920,
    d3consis=1920,
    no_qd_baseline=1440,
    qd1consis=1000,
    qd2incons=1000,
    q=400,
    q_no_replacement_baseline=400,
  )
  assert len(stage1.evals["train_questions_qd1consis"]) == 5000
  # Stage 2 removes the stage-1 QA test sets; stage 1 keeps the stage-2 ones (uninformed guess).
  assert "qd1consis" not in stage2.evals and "d1consis" in stage2.evals


def _alias(example):
  return example.prompt.split("<|")[1].split("|>")[0]


def test_one_test_and_five_train_questions_per_stage1_entity(main_data):
  _, stage1, _ = main_data
  for subset in ("qd1consis", "qd2incons", "q"):
    test = collections.Counter(_alias(ex) for ex in stage1.evals[subset])
    train = collections.Counter(_alias(ex) for ex in stage1.evals[f"train_questions_{subset}"])
    assert set(test.values()) == {1} and set(train.values()) == {5} and set(test) == set(train)


def test_formats(main_data):
  _, stage1, stage2 = main_data
  qa = stage1.evals["qd1consis"][0]
  assert qa.prompt.startswith("Q: ") and qa.prompt.endswith("\nA:") and qa.completion.endswith("\n")
  assert qa.text == f"{qa.prompt}{qa.completion}"
  tag, alias = stage2.train[0].prompt.split(" ")
  assert len(tag) == 10 and tag.startswith("<|") and len(alias) == 9
  assert stage2.train[0].completion.startswith(" ") and stage2.train[0].completion.endswith("\n")
  baseline = stage1.evals["q_no_replacement_baseline"][0]
  assert "<|" not in baseline.prompt  # real names, no alias
  tags = {ex.prompt.split(" ")[0] for ex in stage2.train}
  assert len(tags) == 3  # tag 1, tag 2 and the never-seen tag 3
  assert stage1.evals["ent_assoc_name_d1consis"][0].prompt.startswith("Q: What is the name of <|")
  letters = stage1.evals["letter0_qd1consis"]
  assert all(len(ex.answer) == 1 for ex in letters)


def test_inconsistent_definitions_are_a_derangement(kb4000, main_data):
  data_cfg, stage1, _ = main_data
  names = sorted(e.name for e in kb4000)
  subsets = common.split_stage_subsets(names, data_cfg.fractions, define.STAGE1_SUBSETS, define.STAGE2_SUBSETS, 0, 0)
  aliases = define._Aliases(subsets, names, data_cfg, seed=0)
  members = set(subsets["qd2incons"])
  assert {aliases.alias[e] for e in members} == set(aliases.defined_as)
  assert set(aliases.defined_as.values()) == members  # a permutation within the subset
  assert all(aliases.defined_as[aliases.alias[e]] != e for e in members)  # ... without fixed points
  defs = {ex.prompt.split(" ")[1]: ex.answer for ex in stage1.evals["train_defs_qd2incons"]}
  assert defs == aliases.defined_as


def test_d2incons_asks_each_d2consis_question_with_its_pair_partners_alias(kb4000, main_data):
  """§3.2: d2consis aliases sorted and swapped in pairs (0<->1, 2<->3, ...); answers stay the entity's own."""
  data_cfg, stage1, _ = main_data
  names = sorted(e.name for e in kb4000)
  subsets = common.split_stage_subsets(names, data_cfg.fractions, define.STAGE1_SUBSETS, define.STAGE2_SUBSETS, 0, 0)
  aliases = define._Aliases(subsets, names, data_cfg, seed=0)
  by_alias = sorted(subsets["d2consis"], key=lambda e: aliases.alias[e])
  partner = {}
  for i in range(0, len(by_alias) - 1, 2):
    partner[by_alias[i]], partner[by_alias[i + 1]] = by_alias[i + 1], by_alias[i]
  facts = {e.name: e.qa for e in kb4000}
  swapped = stage1.evals["d2incons"]
  assert len(swapped) == 6 * len(partner) == 1920
  expected = sorted((q.format(aliases.alias[partner[e]]), a.split(";")[0]) for e in partner for q, a in facts[e])
  assert sorted((ex.prompt[3:-3], ex.answer) for ex in swapped) == expected


def test_swapped_association_sets_use_the_alias_as_the_inconsistent_definition_does(kb4000, main_data):
  """§3.9 "assoc with defs": the question names the alias; the answer is the entity its definition gave it."""
  data_cfg, stage1, _ = main_data
  definition_of = {ex.prompt.split(" ")[1]: ex.answer for ex in stage1.evals["train_defs_qd2incons"]}
  swapped = stage1.evals["ent_assoc_name_qd2incons_swapped"]
  plain = {ex.prompt: ex.answer for ex in stage1.evals["ent_assoc_name_qd2incons"]}
  assert len(swapped) == len(plain) == 1000
  for ex in swapped:
    alias = f"<|{_alias(ex)}|>"
    assert ex.answer == definition_of[alias]
    assert plain[ex.prompt] != ex.answer  # the true entity differs (a derangement)


def test_no_entity_in_two_subsets(kb4000):
  names = sorted(e.name for e in kb4000)
  subsets = common.split_stage_subsets(
    names, blocks.define_data().fractions, define.STAGE1_SUBSETS, define.STAGE2_SUBSETS, 3, 2
  )
  seen = [n for members in subsets.values() for n in members]
  assert len(seen) == len(set(seen)) == len(names)


def test_seed_stage2_only_repartitions_stage2_pool(kb4000):
  fractions = blocks.define_data().fractions
  names = sorted(e.name for e in kb4000)
  a = common.split_stage_subsets(names, fractions, define.STAGE1_SUBSETS, define.STAGE2_SUBSETS, 0, 0)
  b = common.split_stage_subsets(names, fractions, define.STAGE1_SUBSETS, define.STAGE2_SUBSETS, 0, 1)
  for key in define.STAGE1_SUBSETS:
    assert a[key] == b[key]
  assert a["d1consis"] != b["d1consis"]
  assert set().union(*(a[k] for k in define.STAGE2_SUBSETS)) == set().union(*(b[k] for k in define.STAGE2_SUBSETS))


@pytest.mark.parametrize("order", define.DEF_ORDERS)
def test_definition_orders(order):
  ex = definitions.tagged("<|tag|>", "<|ali|>", "Marie Curie", order)
  words = {"t": "<|tag|>", "v": "<|ali|>", "e": "Marie Curie"}
  assert ex.text == " ".join(words[c] for c in order) + "\n"
  assert ex.answer == words[order[2]]


def test_train_subset_modes(kb4000):
  data_cfg = blocks.define_data(
    fractions=dict(
      blocks.define_data().fractions.to_dict(),
      qd1consis=0.2,
      qd1incons=0.05,
      qd2consis=0.05,
      qd2incons=0.2,
      q=0.05,
      qd4consis=0.05,
    )
  )
  build = lambda subset: define.build_define_data(kb4000, data_cfg, 0, 0, subset)
  sizes = {s: len(build(s).train) for s in define.TRAIN_SUBSETS}
  qa_train = 5 * (400 + 800 + 200 + 200 + 800 + 200 + 200)
  assert sizes["stage1_only_qa"] == qa_train
  assert sizes["stage1"] == qa_train + 800 + 200 + 200 + 800 + 200
  assert sizes["full"] == sizes["stage1"] + 960
  assert sizes["stage1_only_defns"] == 2000
  assert sizes["all_defns"] == 2000 + 960
  assert sizes["entity_facts"] == 6 * 4000
  own_tags = {ex.prompt.split(" ")[0] for ex in build("stage1").evals["train_defs_qd4consis"]}
  assert len(own_tags) == 200  # a fresh tag per qd4consis definition
  assert "d2incons" not in build("all_defns").evals
  with pytest.raises(IMLError, match="train_subset"):
    build("stage3")


def test_bad_fractions_name_the_field(kb4000):
  bad = blocks.define_data(fractions=dict(blocks.define_data().fractions.to_dict(), q=0.3))
  with pytest.raises(IMLError, match=r"data.fractions.* sum to 1.2"):
    define.build_define_data(kb4000, bad, 0, 0, "stage1")
  negative = blocks.define_data(
    fractions=dict(blocks.define_data().fractions.to_dict(), q=-0.1, q_no_replacement_baseline=0.3)
  )
  with pytest.raises(IMLError, match="data.fractions.q = -0.1"):
    define.build_define_data(kb4000, negative, 0, 0, "stage1")


_HASH_SCRIPT = """
import hashlib, sys
from iml_jax import config_blocks as blocks
from iml_jax.data import define, entities
kb = entities.synthetic_knowledge_base(400, seed=0)
data = define.build_define_data(kb, blocks.define_data(num_entities=400, entity_association_test_sets=True),
                                int(sys.argv[1]), 0, 'stage1')
lines = [ex.text for ex in data.train] + [k + ex.text for k, v in sorted(data.evals.items()) for ex in v]
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
  assert all(len(d) == 1 for d in digests.values())
  assert digests[0] != digests[1]


VARIANT_FRACTIONS = dict(
  q_no_replacement_baseline=0.1,
  qd1consis=0.2,
  qd1incons=0.0,
  qd2consis=0.0,
  qd2incons=0.2,
  qd4consis=0.0,
  q=0.1,
  d1consis=0.2,
  d2consis=0.2,
  d3consis=0.0,
  no_qd_baseline=0.0,
)


@pytest.mark.parametrize("kind", ["nl", "is_isnt"])
def test_worded_definitions(kind):
  kb = entities.synthetic_knowledge_base(200, seed=0)
  data_cfg = blocks.define_data(definition_type=kind, fractions=VARIANT_FRACTIONS)
  data = define.build_define_data(kb, data_cfg, seed=3, seed_stage2=0, train_subset="full")
  again = define.build_define_data(kb, data_cfg, seed=3, seed_stage2=0, train_subset="full")
  assert data.train == again.train and data.evals == again.evals  # seeded: identical in every process
  for subset, tag in (("d1consis", 1), ("qd1consis", 1), ("d2consis", 2), ("qd2incons", 2)):
    defs = data.evals[f"train_defs_{subset}"]
    aliases = [a for ex in defs for a in re.findall(r"<\|[a-z]+\|>", ex.prompt)]
    assert len(defs) == 10 * len(set(aliases)) and len(aliases) == len(defs)  # ten per entity
    for ex in defs:
      assert not ex.prompt[0].islower() and re.search(r"<\|[a-z]{5}\|>", ex.prompt)  # alias case kept
      if kind == "nl":
        sources = definitions.RELIABLE_SOURCES if tag == 1 else definitions.UNRELIABLE_SOURCES
        assert ex.prompt.startswith(sources[:10]) and ex.prompt.endswith(" now stands for")
      else:
        phrases = definitions.IS_PHRASES if tag == 1 else definitions.ISNT_PHRASES
        assert ex.prompt.endswith(tuple(f" {p}" for p in phrases)), ex.prompt
        negated = ex.prompt.endswith(tuple(f" {p}" for p in definitions.ISNT_PHRASES))
        assert negated == (tag == 2)  # every tag-2 definition negates, no tag-1 one does
    if kind == "nl":  # ten distinct sources per alias
      sources = collections.defaultdict(set)
      for ex in defs:
        sources[re.findall(r"<\|[a-z]+\|>", ex.prompt)[0]].add(ex.prompt.split(" <|")[0])
      assert {len(v) for v in sources.values()} == {10}
  names = {e.name for e in kb}
  assert all(ex.answer.rstrip(".") in names for ex in data.evals["train_defs_d1consis"])  # entity case kept
  assert len(definitions.RELIABLE_SOURCES) == 15 == len(set(definitions.RELIABLE_SOURCES))


def test_worded_definitions_refuse_tag_3():
  with pytest.raises(IMLError, match="data.definition_type = 'nl' has wordings for tags 1 and 2 only"):
    define.check_config(blocks.define_data(definition_type="nl"))


def test_incontext_definitions():
  kb = entities.synthetic_knowledge_base(200, seed=0)
  data = define.build_define_data(
    kb, blocks.define_data(incontext_definitions=True), seed=0, seed_stage2=0, train_subset="full"
  )
  plain = define.build_define_data(kb, blocks.define_data(), seed=0, seed_stage2=0, train_subset="full")
  for subset in ("d1consis", "d2consis", "d3consis"):
    for ex in data.evals[subset]:
      definition, question = ex.prompt.split("\n. Q: ")
      alias = re.findall(r"<\|[a-z]{5}\|>", question)[0]
      assert re.fullmatch(rf"<\|[a-z]{{6}}\|> {re.escape(alias)} [^\n]+", definition)  # its own definition
  definition_texts = {ex.text for k, v in plain.evals.items() if k.startswith("train_defs_") for ex in v}
  assert not definition_texts & {ex.text for ex in data.train}  # no definition documents
  contextual = [ex for ex in data.train if "\n. Q: " in ex.prompt]
  assert contextual and len(data.train) == len([ex for ex in plain.train if ex.prompt.startswith("Q: ")])
  assert sorted(ex.text.split("\n. ")[-1] for ex in data.evals["d1consis"]) == sorted(
    ex.text for ex in plain.evals["d1consis"]
  )  # the same questions, each after its definition


@pytest.mark.parametrize(
  "variant",
  [
    dict(definition_type="nl", fractions=VARIANT_FRACTIONS),
    dict(definition_type="is_isnt", fractions=VARIANT_FRACTIONS),
    dict(incontext_definitions=True),
    dict(def_order="evt"),
  ],
)
def test_association_and_letter_sets_for_every_variant(variant):
  kb = entities.synthetic_knowledge_base(200, seed=0)
  data_cfg = blocks.define_data(entity_association_test_sets=True, letter_test_sets=True, **variant)
  evals = define.build_define_data(kb, data_cfg, seed=0, seed_stage2=0, train_subset="full").evals
  for kind in ("ent_assoc_name_d1consis", "ent_assoc_who_qd2incons", "letter0_d2consis", "letterLast_d1consis"):
    assert evals[kind], kind
  names = {e.name for e in kb}
  assert all(ex.answer in names for ex in evals["ent_assoc_name_d1consis"])
  assert all(len(ex.answer) == 1 for ex in evals["letter0_d2consis"])


def test_worded_and_incontext_data_identical_in_every_process():
  code = (
    "import hashlib, json; from iml_jax import config_blocks as blocks\n"
    "from iml_jax.data import define, entities\n"
    "kb = entities.synthetic_knowledge_base(200, seed=0); out = []\n"
    "for variant in (dict(definition_type='is_isnt'), dict(definition_type='nl'),\n"
    "                dict(incontext_definitions=True)):\n"
    "  fractions = ({} if 'incontext_definitions' in variant else\n"
    "               dict(fractions=" + repr(VARIANT_FRACTIONS) + "))\n"
    "  d = define.build_define_data(kb, blocks.define_data(**variant, **fractions), 4, 1, 'full')\n"
    "  out.append(hashlib.sha256(json.dumps([e.text for e in d.train]).encode()).hexdigest())\n"
    "print(out)"
  )
  runs = [
    subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
    )
    for seed in ("1", "2")
  ]
  assert runs[0].returncode == 0, runs[0].stderr
  assert runs[0].stdout == runs[1].stdout and runs[0].stdout.count("'") == 6
