"""One interface over the study's tasks for the experiment loop: tokenizer, stage data, alias tokens."""
import functools
import re

from iml_jax import io_utils, metrics
from iml_jax.data import define, entities, modular, numeric, toy1d, trex, vision
from iml_jax.data.common import StageData
from iml_jax.data.tokenization import (TextTokenizer, byte_level_bpe_tokenizer, pretrained_tokenizer,
                                       word_level_tokenizer)
from iml_jax.errors import IMLError

TASKS = ("numeric", "define", "modular", "vision", "toy1d")
# task -> its generator module (TRAIN_SUBSETS, STAGE2_SUBSETS, SUBSETS, check_config)
_GENERATORS = {"numeric": numeric, "define": define, "modular": modular, "vision": vision, "toy1d": toy1d}
# Tasks whose examples are arrays, not text: the one model that reads them, and their module's task class
# (`encode(examples)` -> inputs / targets / loss_mask) and `score(arrays, predictions)`.
ARRAY_TASK_MODELS = {"vision": "convnet", "toy1d": "mlp"}
_ARRAY_TASKS = {"vision": vision.VisionTask, "toy1d": toy1d.ToyTask}
_WRAPPED_ALIAS = re.compile(r"<\|[a-z]+\|>")
KNOWLEDGE_BASES = ("synthetic", "cvdb", "trex")
_EVAL_SET_PREFIXES = ("train_questions_", "train_defs_", "ent_assoc_", "letter0_", "letter1_", "letterLast_",
                      "entity_facts_")


def validate(config) -> None:
  """Checks the data fields before anything is written."""
  if config.task not in TASKS:
    raise IMLError(f"config field task = {config.task!r}: expected one of {TASKS}")
  subsets = _GENERATORS[config.task].TRAIN_SUBSETS
  for name in config.stage_names:
    subset = config.stages[name].train_subset
    if subset not in subsets:
      raise IMLError(f"config field stages.{name}.train_subset = {subset!r}: expected one of {sorted(subsets)}")
  if config.eval.subsets != "all":
    known = define.SUBSETS + ("d2incons",) if config.task == "define" else _GENERATORS[config.task].SUBSETS
    for name in config.eval.subsets.split(","):
      if name not in known and not name.startswith(_EVAL_SET_PREFIXES):
        raise IMLError(f"config field eval.subsets names unknown set {name!r}: expected 'all' or a comma-separated "
                       f"list of {known} (or train_questions_*, train_defs_*, ent_assoc_*, letter* sets)")
  _GENERATORS[config.task].check_config(config.data)
  if config.task == "define":
    if config.data.knowledge_base not in KNOWLEDGE_BASES:
      raise IMLError(f"config field data.knowledge_base = {config.data.knowledge_base!r}: "
                     f"expected one of {KNOWLEDGE_BASES}")


def score_of(config) -> metrics.Score:
  """The score a task's evaluations record (the 1-D toy: MSE; every other task: EM and F1)."""
  return getattr(_GENERATORS[config.task], "SCORE", metrics.EXACT_MATCH)


def chance_level(config) -> float | None:
  """The score of guessing, where the task defines one (the numeric task's true/false answers: 0.5)."""
  return getattr(_GENERATORS[config.task], "CHANCE", None)


def uses_stage2_split(config, train_subset: str) -> bool:
  """Whether a stage trains on the entities that `seed_stage2` re-partitions."""
  generator = _GENERATORS[config.task]
  return any(s in generator.STAGE2_SUBSETS for s in generator.TRAIN_SUBSETS[train_subset][1])


class Task:
  """The data side of one stage-1 seed."""

  def __init__(self, config, seed: int, pretrained_folder: str | None = None):
    self.config, self.seed, self.pretrained_folder = config, seed, pretrained_folder

  @functools.cached_property
  def _entities(self):
    data = self.config.data
    if data.knowledge_base == "synthetic":
      return entities.synthetic_knowledge_base(data.num_entities, data.kb_seed)
    if data.knowledge_base == "trex":  # the works chosen depend on the seed (docs/study.md §3.7)
      return trex.trex_knowledge_base(trex.load_triplets(data.trex_path), self.seed, data.num_entities)
    return entities.load_cvdb(data.cvdb_path, data.num_entities, data.equalize_gender, data.cvdb_encoding)

  @functools.lru_cache(maxsize=None)
  def _numeric(self, seed_stage2: int) -> numeric.NumericTask:
    return numeric.NumericTask(self.config.data, self.seed, seed_stage2)

  @functools.lru_cache(maxsize=None)
  def _modular(self, seed_stage2: int) -> modular.ModularTask:
    return modular.ModularTask(self.config.data, self.seed, seed_stage2)

  @functools.lru_cache(maxsize=None)
  def _array_task(self, seed_stage2: int):
    return _ARRAY_TASKS[self.config.task](self.config.data, self.seed, seed_stage2)

  def encode_arrays(self, examples) -> dict:
    """The arrays of an array task's examples (they depend on the seed only)."""
    return self._array_task(0).encode(examples)

  def score_arrays(self, arrays: dict, predictions):
    return _GENERATORS[self.config.task].score(arrays, predictions)

  def stage_data(self, seed_stage2: int, stage_index: int, train_subset: str) -> StageData:
    if self.config.task in ARRAY_TASK_MODELS:
      return self._array_task(seed_stage2).stage_data(train_subset)
    if self.config.task == "modular":
      return self._modular(seed_stage2).stage_data(train_subset)
    if self.config.task == "numeric":
      return self._numeric(seed_stage2).stage_data(train_subset, redraw_key=stage_index)
    return define.build_define_data(self._entities, self.config.data, self.seed, seed_stage2, train_subset)

  def alias_tokens(self) -> list[str]:
    return self._numeric(0).alias_tokens() if self.config.task == "numeric" else []

  def aliases_in(self, example) -> list[str]:
    """The alias strings an example mentions (a definition may also hold a `<|tag|>`); pairs definitions
    with their questions for the gradient-alignment analysis."""
    if self.config.task == "numeric":  # "abc % 1 2 =", "define1 abc % 63"
      words = example.prompt.split(" %")[0].split(" ")
      return [" ".join(words[1:] if words[0].startswith("define") else words)]
    if self.config.task == "modular":  # "v v v v 0 7 =", "t t % v v v v ="
      words = example.prompt.split()
      return ["".join(words[words.index("%") + 1:-1] if "%" in words else words[:modular.ALIAS_LENGTH])]
    return _WRAPPED_ALIAS.findall(example.text)

  def tokenizer(self, path: str) -> TextTokenizer | None:
    """The seed's tokenizer: the pretrained model's, or loaded from `path` if saved there, else built and
    saved there; None for array tasks."""
    if self.config.task in ARRAY_TASK_MODELS:
      return None
    if self.pretrained_folder:
      return pretrained_tokenizer(self.pretrained_folder)
    if io_utils.exists(path):
      return TextTokenizer.load(path)
    if self.config.task == "numeric":
      tokenizer = word_level_tokenizer(self._numeric(0).vocabulary())
    elif self.config.task == "modular":
      tokenizer = word_level_tokenizer(modular.VOCABULARY)
    else:
      corpus = self.stage_data(0, 0, "full")
      texts = [ex.text for ex in corpus.train] + [ex.text for v in corpus.evals.values() for ex in v]
      texts += [ex.text for ex in self.stage_data(0, 0, "entity_facts").train]
      tokenizer = byte_level_bpe_tokenizer(texts, self.config.tokenizer.vocab_size)
    tokenizer.save(path)
    return tokenizer
