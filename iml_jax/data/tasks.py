"""The study's tasks behind one protocol, one class per task: what the experiment loop asks of a task — each
stage's data, the tokenizer, the alias tokens, which aliases an example mentions, and (array tasks) the arrays
of its examples and their score. `TASKS[task]` is the only place a task is looked up by name."""

import functools
import re

from iml_jax import io_utils, metrics
from iml_jax.data import define, entities, modular, numeric, toy1d, trex, vision
from iml_jax.data.common import StageData
from iml_jax.data.tokenization import (
  TextTokenizer,
  byte_level_bpe_tokenizer,
  pretrained_tokenizer,
  word_level_tokenizer,
)
from iml_jax.errors import IMLError

_WRAPPED_ALIAS = re.compile(r"<\|[a-z]+\|>")
KNOWLEDGE_BASES = ("synthetic", "cvdb", "trex")
_EVAL_SET_PREFIXES = (
  "train_questions_",
  "train_defs_",
  "ent_assoc_",
  "letter0_",
  "letter1_",
  "letterLast_",
  "entity_facts_",
)


class Task:
  """The data side of one stage-1 seed of a task. A subclass names its generator module (Data, TRAIN_SUBSETS,
  STAGE2_SUBSETS, SUBSETS, check_config) and builds each stage's data from `data` (the generator's `Data`); text
  tasks build a tokenizer (`tokenizer`: specs.Tokenizer)."""

  generator = None
  score: metrics.Score = metrics.EXACT_MATCH  # what its evaluations record
  chance: float | None = None  # the score of guessing, where the task defines one
  array_model: str | None = None  # the one model that reads an array task's examples

  def __init__(self, data, tokenizer, seed: int, pretrained_folder: str | None = None):
    self.data, self.tokenizer_spec, self.seed, self.pretrained_folder = data, tokenizer, seed, pretrained_folder

  @classmethod
  def eval_set_names(cls) -> tuple[str, ...]:
    return cls.generator.SUBSETS

  @classmethod
  def check_config(cls, data) -> None:
    cls.generator.check_config(data)

  def stage_data(self, seed_stage2: int, stage_index: int, train_subset: str) -> StageData:
    raise NotImplementedError

  def alias_tokens(self) -> list[str]:
    """The tokens that spell aliases (trainable rows, or left out of the loss); none unless the task has them."""
    return []

  def aliases_in(self, example) -> list[str]:
    """The alias strings an example mentions (a definition may also hold a `<|tag|>`); pairs definitions
    with their questions for the gradient-alignment analysis."""
    return _WRAPPED_ALIAS.findall(example.text)

  def tokenizer(self, path: str) -> TextTokenizer | None:
    """The seed's tokenizer: the pretrained model's, or loaded from `path` if saved there, else built and
    saved there."""
    if self.pretrained_folder:
      return pretrained_tokenizer(self.pretrained_folder)
    if io_utils.exists(path):
      return TextTokenizer.load(path)
    tokenizer = self._new_tokenizer()
    tokenizer.save(path)
    return tokenizer

  def _new_tokenizer(self) -> TextTokenizer:
    raise NotImplementedError


class Define(Task):
  """Definitions and questions about entities of a knowledge base (synthetic, CVDB or T-REx)."""

  generator = define

  @classmethod
  def eval_set_names(cls):
    return define.SUBSETS + ("d2incons",)

  @classmethod
  def check_config(cls, data):
    define.check_config(data)
    if data.knowledge_base not in KNOWLEDGE_BASES:
      raise IMLError(f"config field data.knowledge_base = {data.knowledge_base!r}: expected one of {KNOWLEDGE_BASES}")

  @functools.cached_property
  def _entities(self):
    data = self.data
    if data.knowledge_base == "synthetic":
      return entities.synthetic_knowledge_base(data.num_entities, data.kb_seed)
    if data.knowledge_base == "trex":  # the works chosen depend on the seed (docs/study.md §3.7)
      return trex.trex_knowledge_base(trex.load_triplets(data.trex_path), self.seed, data.num_entities)
    return entities.load_cvdb(data.cvdb_path, data.num_entities, data.equalize_gender, data.cvdb_encoding)

  def stage_data(self, seed_stage2, stage_index, train_subset):
    return define.build_define_data(self._entities, self.data, self.seed, seed_stage2, train_subset)

  def _new_tokenizer(self):
    corpus = self.stage_data(0, 0, "full")
    texts = [ex.text for ex in corpus.train] + [ex.text for v in corpus.evals.values() for ex in v]
    texts += [ex.text for ex in self.stage_data(0, 0, "entity_facts").train]
    return byte_level_bpe_tokenizer(texts, self.tokenizer_spec.vocab_size)


class Numeric(Task):
  """Set inclusion: "abc % 1 2 =", "define1 abc % 63"; one token per alias, true/false answers."""

  generator = numeric
  chance = numeric.CHANCE

  @functools.lru_cache(maxsize=None)
  def _generated(self, seed_stage2: int) -> numeric.NumericTask:
    return numeric.NumericTask(self.data, self.seed, seed_stage2)

  def stage_data(self, seed_stage2, stage_index, train_subset):
    return self._generated(seed_stage2).stage_data(train_subset, redraw_key=stage_index)

  def alias_tokens(self):
    return self._generated(0).alias_tokens()

  def aliases_in(self, example):
    words = example.prompt.split(" %")[0].split(" ")
    return [" ".join(words[1:] if words[0].startswith("define") else words)]

  def _new_tokenizer(self):
    return word_level_tokenizer(self._generated(0).vocabulary())


class Modular(Task):
  """Modular arithmetic with character-spaced aliases: "v v v v 0 7 =", "t t % v v v v ="."""

  generator = modular

  @functools.lru_cache(maxsize=None)
  def _generated(self, seed_stage2: int) -> modular.ModularTask:
    return modular.ModularTask(self.data, self.seed, seed_stage2)

  def stage_data(self, seed_stage2, stage_index, train_subset):
    return self._generated(seed_stage2).stage_data(train_subset)

  def aliases_in(self, example):
    words = example.prompt.split()
    return ["".join(words[words.index("%") + 1 : -1] if "%" in words else words[: modular.ALIAS_LENGTH])]

  def _new_tokenizer(self):
    return word_level_tokenizer(modular.VOCABULARY)


class ArrayTask(Task):
  """A task whose examples are arrays, not text: no tokenizer; the generator's task class encodes examples
  (`encode(examples)` -> inputs / targets / loss_mask) and its module scores predictions."""

  generated_class = None

  @functools.lru_cache(maxsize=None)
  def _generated(self, seed_stage2: int):
    return self.generated_class(self.data, self.seed, seed_stage2)

  def stage_data(self, seed_stage2, stage_index, train_subset):
    return self._generated(seed_stage2).stage_data(train_subset)

  def tokenizer(self, path):
    return None

  def encode_arrays(self, examples) -> dict:
    """The arrays of the task's examples (they depend on the seed only)."""
    return self._generated(0).encode(examples)

  def score_arrays(self, arrays: dict, predictions) -> dict:
    return self.generator.score(arrays, predictions)


class Vision(ArrayTask):
  """Digit-grid aliases and A/B-grid entities, read by a ConvNet."""

  generator, generated_class, array_model = vision, vision.VisionTask, "convnet"


class Toy1D(ArrayTask):
  """The 1-D regression toy, read by an MLP; scored by squared error."""

  generator, generated_class, array_model = toy1d, toy1d.ToyTask, "mlp"
  score = toy1d.SCORE


TASKS: dict[str, type[Task]] = {
  "numeric": Numeric,
  "define": Define,
  "modular": Modular,
  "vision": Vision,
  "toy1d": Toy1D,
}


def task_class(task: str) -> type[Task]:
  if task not in TASKS:
    raise IMLError(f"config field task = {task!r}: expected one of {tuple(TASKS)}")
  return TASKS[task]


def for_seed(experiment, seed: int, pretrained_folder: str | None = None) -> Task:
  """The task of `experiment` (specs.Experiment: its task, data and tokenizer) for stage-1 seed `seed`."""
  return task_class(experiment.task)(experiment.data, experiment.tokenizer, seed, pretrained_folder)


def check(experiment) -> None:
  """Checks the data fields and the subsets the stages train on and the evaluation reads (specs.Experiment)."""
  cls = task_class(experiment.task)
  subsets = cls.generator.TRAIN_SUBSETS
  for name, stage in experiment.stages.items():
    if stage.train_subset not in subsets:
      raise IMLError(
        f"config field stages.{name}.train_subset = {stage.train_subset!r}: expected one of {sorted(subsets)}"
      )
  if experiment.eval.subsets != "all":
    known = cls.eval_set_names()
    for name in experiment.eval.subsets.split(","):
      if name not in known and not name.startswith(_EVAL_SET_PREFIXES):
        raise IMLError(
          f"config field eval.subsets names unknown set {name!r}: expected 'all' or a comma-separated "
          f"list of {known} (or train_questions_*, train_defs_*, ent_assoc_*, letter* sets)"
        )
  cls.check_config(experiment.data)


def array_model(task: str) -> str | None:
  """The model an array task's examples need (None: a text task, or no such task)."""
  return getattr(TASKS.get(task), "array_model", None)


def score_of(task: str) -> metrics.Score:
  """The score a task's evaluations record (the 1-D toy: MSE; every other task: EM and F1)."""
  return task_class(task).score


def chance_level(task: str) -> float | None:
  """The score of guessing, where the task defines one (the numeric task's true/false answers: 0.5)."""
  return task_class(task).chance


def uses_stage2_split(task: str, train_subset: str) -> bool:
  """Whether a stage trains on the entities that `seed_stage2` re-partitions."""
  generator = task_class(task).generator
  return any(s in generator.STAGE2_SUBSETS for s in generator.TRAIN_SUBSETS[train_subset][1])
