"""The main "define" experiment's data (docs/study.md §3): aliases, tagged definitions, subsets, QA splits.

Code keys follow the original (`qd1consis`, `d2consis`, ...). `build_define_data` is a pure function
of (entities, data config, seed, seed_stage2): same arguments, byte-identical examples in any process.
"""

import dataclasses
import random

from iml_jax.data import definitions
from iml_jax.data.common import (
  Fractions,
  Example,
  StageData,
  check_fractions,
  derangement,
  generate_variable_names,
  split_stage_subsets,
)
from iml_jax.data.entities import Entity
from iml_jax.errors import IMLError

STAGE1_SUBSETS = ("q_no_replacement_baseline", "qd1consis", "qd1incons", "qd2consis", "qd2incons", "qd4consis", "q")
STAGE2_SUBSETS = ("d1consis", "d2consis", "d3consis", "no_qd_baseline")
SUBSETS = STAGE1_SUBSETS + STAGE2_SUBSETS
# subset -> (tag, consistent?) for every subset that has definitions.
DEFINED_SUBSETS = {
  "qd1consis": ("tag1", True),
  "qd1incons": ("tag1", False),
  "qd2consis": ("tag2", True),
  "qd2incons": ("tag2", False),
  "qd4consis": ("own", True),
  "d1consis": ("tag1", True),
  "d2consis": ("tag2", True),
  "d3consis": ("tag3", True),
}
DEF_ORDERS = ("tve", "tev", "vte", "vet", "etv", "evt")
ENT_ASSOC_QUESTIONS = {
  "who": "Who is {}?",
  "meaning": "What does {} mean?",
  "standFor": "What does {} stand for?",
  "name": "What is the name of {}?",
}
LETTER_QUESTIONS = {
  "letter0": ("Which letter does the name of {} start with?", 0),
  "letter1": ("What is the second letter of the name of {}?", 1),
  "letterLast": ("What is the last letter of the name of {}?", -1),
}

_QA_TRAINED = ("q_no_replacement_baseline", "qd1consis", "qd1incons", "qd2consis", "qd2incons", "qd4consis", "q")
# train_subset -> (QA train splits?, subsets whose definitions are trained, eval QA sets removed).
TRAIN_SUBSETS = {
  "full": (
    True,
    ("qd1consis", "qd1incons", "qd2consis", "qd2incons", "qd4consis", "d1consis", "d2consis", "d3consis"),
    (),
  ),
  "stage1": (True, ("qd1consis", "qd1incons", "qd2consis", "qd2incons", "qd4consis"), ()),
  "stage2": (
    False,
    ("d1consis", "d2consis", "d3consis"),
    ("q_no_replacement_baseline", "qd1consis", "qd1incons", "qd2consis", "qd2incons", "q"),
  ),
  "stage1_only_defns": (
    False,
    ("qd1consis", "qd1incons", "qd2consis", "qd2incons"),
    ("d1consis", "d2consis", "d2incons", "d3consis", "q_no_replacement_baseline"),
  ),
  "stage1_only_qa": (True, (), ()),
  "all_defns": (
    False,
    ("qd1consis", "qd1incons", "qd2consis", "qd2incons", "d1consis", "d2consis", "d3consis"),
    ("q_no_replacement_baseline", "d2incons"),
  ),
  # Not in the study: teaches a from-scratch model every entity's facts under its real name, the
  # role pretraining plays for the study's LLMs.
  "entity_facts": (False, (), ()),
}


def qa_example(question: str, answer: str, context: str = "") -> Example:
  return Example(f"{context}Q: {question}\nA:", f" {answer}\n")


@dataclasses.dataclass(frozen=True)
class Data:
  """`data` of the define task (configs: config_blocks.define_data)."""

  knowledge_base: str
  kb_seed: int
  cvdb_path: str
  cvdb_encoding: str
  trex_path: str
  equalize_gender: bool
  num_entities: int
  fractions: Fractions
  def_order: str
  definition_type: str
  incontext_definitions: bool
  alias_length: int
  tag_length: int
  tag1_name: str
  tag2_name: str
  tag3_name: str
  test_frac: float
  entity_association_test_sets: bool
  letter_test_sets: bool
  block_size: int
  label_block_size: int = 0  # a seq2seq model's target length


def check_config(spec: Data) -> None:
  fractions = {k: spec.fractions[k] for k in SUBSETS}
  check_fractions(fractions, "data.fractions")
  if spec.def_order not in DEF_ORDERS:
    raise IMLError(f"config field data.def_order = {spec.def_order!r}: expected one of {DEF_ORDERS}")
  if spec.definition_type not in definitions.DEFINITION_TYPES:
    raise IMLError(
      f"config field data.definition_type = {spec.definition_type!r}: expected one of {definitions.DEFINITION_TYPES}"
    )
  if spec.definition_type != "tagged":
    extra = [k for k in ("d3consis", "qd4consis") if spec.fractions[k]]
    if extra:
      raise IMLError(
        f"config fields data.fractions.{extra[0]} = {spec.fractions[extra[0]]}: "
        f"data.definition_type = {spec.definition_type!r} has wordings for tags 1 and 2 only; "
        "set the tag-3 and own-tag fractions to 0"
      )
  if spec.incontext_definitions and spec.definition_type != "tagged":
    raise IMLError("config field data.incontext_definitions = True needs data.definition_type = 'tagged'")
  if not 0 < spec.test_frac < 1:
    raise IMLError(f"config field data.test_frac = {spec.test_frac}: expected a number in (0, 1)")


class _Aliases:
  """Everything the seed fixes: the entity→alias map, tags and the deranged definition maps."""

  def __init__(self, subsets: dict[str, list[str]], names: list[str], spec: Data, seed: int):
    rng = random.Random(seed)
    self.alias = dict(zip(names, generate_variable_names(len(names), spec.alias_length, rng)))
    drawn_tags = generate_variable_names(3, spec.tag_length, rng)
    self.tags = {f"tag{i + 1}": getattr(spec, f"tag{i + 1}_name") or drawn_tags[i] for i in range(3)}
    # Inconsistent definitions: the alias of entity e is defined as another entity of its subset.
    self.defined_as = {}
    for key in ("qd1incons", "qd2incons"):
      members = sorted(subsets[key])
      if not members:
        continue
      order = list(members)
      rng.shuffle(order)
      for entity, other in zip(order, derangement(order, rng)):
        self.defined_as[self.alias[entity]] = other
    self.own_tags = dict(
      zip(sorted(subsets["qd4consis"]), generate_variable_names(len(subsets["qd4consis"]), spec.tag_length, rng))
    )
    self.rng = rng

  def definitions(self, subset: str, entity: str, spec) -> list[Example]:
    """The definitions of `entity`'s alias in `subset`: one tagged one, or ten worded ones."""
    tag_key, consistent = DEFINED_SUBSETS[subset]
    alias = self.alias[entity]
    named = entity if consistent else self.defined_as[alias]
    if spec.definition_type == "nl":
      return definitions.natural_language(alias, named, reliable=tag_key == "tag1")
    if spec.definition_type == "is_isnt":
      return definitions.is_isnt(alias, named, affirm=tag_key == "tag1", rng=self.rng)
    tag = self.own_tags[entity] if tag_key == "own" else self.tags[tag_key]
    return [definitions.tagged(tag, alias, named, spec.def_order)]


def build_define_data(entities: list[Entity], spec: Data, seed: int, seed_stage2: int, train_subset: str) -> StageData:
  """One stage's training examples and evaluation sets for the define experiment."""
  check_config(spec)
  if train_subset not in TRAIN_SUBSETS:
    raise IMLError(f"config field train_subset = {train_subset!r}: expected one of {sorted(TRAIN_SUBSETS)}")
  by_name = {e.name: e for e in entities}
  if len(by_name) != len(entities):
    raise IMLError("the knowledge base has duplicate entity names")
  names = sorted(by_name)
  subsets = split_stage_subsets(names, spec.fractions, STAGE1_SUBSETS, STAGE2_SUBSETS, seed, seed_stage2)
  aliases = _Aliases(subsets, names, spec, seed)
  definitions_of = {s: {e: aliases.definitions(s, e, spec) for e in subsets[s]} for s in DEFINED_SUBSETS}
  # In-context variant (docs/study.md §4.2): a defined entity's questions carry its definition, followed by the
  # original's stray ". " (bug #20, reproduced).
  context = (
    {e: defs[0].text + ". " for s, by_entity in definitions_of.items() for e, defs in by_entity.items()}
    if spec.incontext_definitions
    else {}
  )

  def questions(entity, use_alias=True):
    label = aliases.alias[entity] if use_alias else entity
    prefix = context.get(entity, "") if use_alias else ""
    return [qa_example(q.format(label), a, prefix) for q, a in by_name[entity].qa]

  # QA train/test split of the stage-1 pool, stratified by entity (sklearn, random_state=seed).
  pool = [
    (s, e, ex)
    for s in _QA_TRAINED
    for e in subsets[s]
    for ex in questions(e, use_alias=s != "q_no_replacement_baseline")
  ]
  train_qa: dict[str, list[Example]] = {s: [] for s in _QA_TRAINED}
  test_qa: dict[str, list[Example]] = {s: [] for s in SUBSETS}
  if pool:
    from sklearn.model_selection import train_test_split  # here: importing sklearn takes a second

    try:
      train_rows, test_rows = train_test_split(
        pool, test_size=spec.test_frac, random_state=seed, stratify=[e for _, e, _ in pool]
      )
    except ValueError as err:  # e.g. fewer test questions than entities to stratify by
      raise IMLError(
        f"config field data.test_frac = {spec.test_frac}: the stratified QA split of "
        f"{len(pool)} questions fails ({err}); use more entities or questions per entity"
      ) from None
    for s, _, ex in train_rows:
      train_qa[s].append(ex)
    for s, _, ex in test_rows:
      test_qa[s].append(ex)
  for s in STAGE2_SUBSETS:
    test_qa[s] = [ex for e in subsets[s] for ex in questions(e)]
  defined_examples = {s: [d for e in subsets[s] for d in definitions_of[s][e]] for s in DEFINED_SUBSETS}

  evals = {s: test_qa[s] for s in SUBSETS}
  # d2consis questions with aliases swapped in pairs: each asks about another d2 entity's alias.
  d2 = sorted(subsets["d2consis"], key=lambda e: aliases.alias[e])
  swapped = {}
  for i in range(0, len(d2) - 1, 2):
    swapped[d2[i]], swapped[d2[i + 1]] = aliases.alias[d2[i + 1]], aliases.alias[d2[i]]
  evals["d2incons"] = [qa_example(q.format(swapped[e]), a) for e in d2 if e in swapped for q, a in by_name[e].qa]
  for s in _QA_TRAINED:
    evals[f"train_questions_{s}"] = train_qa[s]
  for s in DEFINED_SUBSETS:
    evals[f"train_defs_{s}"] = defined_examples[s]
  if spec.entity_association_test_sets:
    evals.update(_association_sets(subsets, aliases, ENT_ASSOC_QUESTIONS, "ent_assoc_{}_{}", lambda e: e))
  if spec.letter_test_sets:
    for kind, (question, index) in LETTER_QUESTIONS.items():
      evals.update(_association_sets(subsets, aliases, {kind: question}, "{}_{}", lambda e, i=index: e[i]))

  qa_on, defined, removed = TRAIN_SUBSETS[train_subset]
  if train_subset == "entity_facts":
    train = [ex for e in names for ex in questions(e, use_alias=False)]
    evals = {
      f"entity_facts_{s}": [ex for e in subsets[s] for ex in questions(e, use_alias=False)]
      for s in SUBSETS
      if subsets[s]
    }
  else:
    train = [ex for s in _QA_TRAINED if qa_on for ex in train_qa[s]]
    if not spec.incontext_definitions:  # in context, definitions are no documents of their own
      train += [ex for s in defined for ex in defined_examples[s]]
    for key in removed:
      evals.pop(key, None)
  # Sorted by text, then shuffled with the seeded rng, as the original builds its training set.
  train.sort(key=lambda ex: ex.text)
  aliases.rng.shuffle(train)
  evals = {k: sorted(v, key=lambda ex: ex.prompt) for k, v in evals.items() if v}
  return StageData(train=train, evals=evals)


def _association_sets(subsets, aliases, templates, key_format, answer_of):
  sets = {}
  for s in SUBSETS:
    if s in ("q_no_replacement_baseline", "no_qd_baseline"):
      continue
    for kind, question in templates.items():
      sets[key_format.format(kind, s)] = [
        qa_example(question.format(aliases.alias[e]), answer_of(e)) for e in subsets[s]
      ]
  # "assoc with defs": the alias as used in the inconsistent definition; the answer is its entity.
  for s in ("qd1incons", "qd2incons"):
    for kind, question in templates.items():
      sets[key_format.format(kind, f"{s}_swapped")] = [
        qa_example(question.format(aliases.alias[e]), answer_of(aliases.defined_as[aliases.alias[e]]))
        for e in subsets[s]
      ]
  return sets
