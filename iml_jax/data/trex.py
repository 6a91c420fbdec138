r"""The study's T-REx knowledge base (docs/study.md §3.7): creative works and their Wikidata facts as QA pairs.

  python -m iml_jax.data.trex --trex_dir=datasets/t-rex-data/original-dataset \
      --out=datasets/t-rex-data/trex_subj_obj_predicate_triplets_filtered.json

reads every T-REx JSON file once (slow for the full dump) and writes the filtered triplets that configs point
`data.trex_path` at. `trex_knowledge_base` turns them into entities; unlike CVDB the selection depends on the
seed. Fixed relative to the original (bug #10): P577 items without a year are skipped instead of being
removed from the list being iterated (which skipped their neighbours).
"""

import collections
import os
import random
import re
import sys

from iml_jax import io_utils
from iml_jax.data.entities import Entity, convert_year
from iml_jax.errors import IMLError

# Predicate -> question about the work "{}" (the 25 creative-work predicates the study keeps).
TEMPLATES = {
  "P50": "First name of the author of {}?",
  "P123": "Who is the publisher of {}?",
  "P577": "When was {} published or released?",
  "P136": "What is the genre of {}?",
  "P407": "In which language was {} published?",
  "P364": "In which language was {} published?",
  "P179": "Which series is {} part of?",
  "P57": "First name of the director of {}?",
  "P58": "First name of the screenwriter of {}?",
  "P344": "First name of the director of photography of {}?",
  "P1040": "Who edited the film {}?",
  "P162": "First name of the producer of {}?",
  "P275": "Under which license is {} published?",
  "P750": "Who distributes {}?",
  "P921": "What is the main subject of {}?",
  "P127": "Who owns {}?",
  "P86": "First name of the composer of {}?",
  "P178": "Who developed {}?",
  "P31": "What kind of work is {}?",
  "P840": "Where is {} set?",
  "P915": "Where was {} filmed?",
  "P98": "First name of the editor of {}?",
  "P135": "Which movement is {} part of?",
  "P180": "What does {} depict?",
  "P195": "Which collection is {} part of?",
}
PERSON_PREDICATES = ("P50", "P57", "P58", "P88", "P98", "P161", "P162", "P86", "P344")
PRONOUNS = ("he", "she", "it", "they")
_YEAR = re.compile(r"\d{4}")
_PARENTHESISED = re.compile(r"\s*\([^)]*\)")


def read_triplets(folder: str) -> list[tuple[str, str, str]]:
  """Sorted, de-duplicated (subject, object, predicate id) of every T-REx JSON file in `folder`."""
  paths = [os.path.join(folder, name) for name in io_utils.listdir(folder) if name.endswith(".json")]
  if not paths:
    raise IMLError(f"T-REx folder {folder} holds no *.json files")
  triplets = set()
  for path in paths:
    try:
      documents = io_utils.read_json(path)
    except IMLError as err:
      raise IMLError(f"T-REx file {err}") from None
    if not isinstance(documents, list):
      raise IMLError(f"T-REx file {path}: expected a list of documents")
    for index, document in enumerate(documents):
      try:
        for triple in document["triples"]:
          subject, obj = triple["subject"]["surfaceform"], triple["object"]["surfaceform"]
          predicate = triple["predicate"]["uri"].rstrip("/").split("/")[-1]
          if subject and obj:
            triplets.add((subject, obj, predicate))
      except (KeyError, TypeError, AttributeError):
        raise IMLError(
          f"T-REx file {path}, document {index}: expected triples with subject.surfaceform, "
          "object.surfaceform and predicate.uri"
        ) from None
  return sorted(triplets)


def filter_triplets(triplets) -> list[tuple[str, str, str]]:
  """Drops subjects seen once and pronoun subjects or objects (the study's filtered file)."""
  counts = collections.Counter(subject for subject, _, _ in triplets)
  return [t for t in triplets if counts[t[0]] > 1 and t[0].lower() not in PRONOUNS and t[1].lower() not in PRONOUNS]


def load_triplets(path: str) -> list[tuple[str, str, str]]:
  if not io_utils.exists(path):
    raise IMLError(
      f"T-REx triplets file {path} does not exist (config field data.trex_path): build it with "
      "python -m iml_jax.data.trex --trex_dir=<T-REx JSON folder> --out=<file>"
    )
  try:
    rows = io_utils.read_json(path)
  except IMLError as err:
    raise IMLError(f"T-REx triplets file {err}") from None
  if not isinstance(rows, list) or not all(
    isinstance(r, list) and len(r) == 3 and all(isinstance(x, str) for x in r) for r in rows
  ):
    raise IMLError(f"T-REx triplets file {path}: expected a list of [subject, object, predicate] string triples")
  return [tuple(r) for r in rows]


def _answer(predicate: str, obj: str) -> str | None:
  """The answer an object gives, or None when the study drops it."""
  if predicate == "P577":
    year = _YEAR.search(obj)
    return convert_year(int(year.group())) if year else None
  if predicate in PERSON_PREDICATES:
    words = obj.split()
    return words[0] if len(words) > 1 and len(words[0]) > 1 else None
  return obj


def trex_knowledge_base(
  triplets, seed: int, max_entities: int, min_predicates: int = 4, max_questions: int = 100
) -> list[Entity]:
  """Works with at least `min_predicates` of the 25 predicates, as entities with their QA pairs; which
  `max_entities` works are kept depends on `seed`. Answers of one question are merged with ';' and, as
  for CVDB, only the first is the gold answer (bug #18, reproduced)."""
  by_subject = collections.defaultdict(set)
  for subject, _, predicate in triplets:
    if predicate in TEMPLATES:
      by_subject[subject].add(predicate)
  items = []
  for subject, obj, predicate in triplets:
    if predicate not in TEMPLATES or len(by_subject[subject]) < min_predicates:
      continue
    answer = _answer(predicate, _PARENTHESISED.sub("", obj).strip())
    entity = _PARENTHESISED.sub("", subject).strip()
    if answer and entity:
      items.append((entity, TEMPLATES[predicate], answer))
  items.sort()
  random.Random(seed).shuffle(items)
  seen, merged = set(), collections.OrderedDict()
  for entity, question, answer in items:
    if (entity, answer) in seen:
      continue
    seen.add((entity, answer))
    merged.setdefault(entity, collections.OrderedDict()).setdefault(question, []).append(answer)
  chosen = []
  for entity, questions in merged.items():
    if min_predicates <= len(questions) <= max_questions:
      # The merged answer "a;b" has the gold "a": its first answer.
      chosen.append(Entity(entity, tuple(sorted((q, answers[0]) for q, answers in questions.items()))))
    if len(chosen) == max_entities:
      break
  if len(chosen) < max_entities:
    raise IMLError(
      f"the T-REx triplets yield only {len(chosen)} works with >= {min_predicates} questions; "
      f"config field data.num_entities asks for {max_entities}"
    )
  return sorted(chosen, key=lambda e: e.name)


def main(argv: list[str]) -> None:
  from absl import flags

  try:
    triplets = filter_triplets(read_triplets(flags.FLAGS.trex_dir))
  except IMLError as err:
    sys.exit(f"iml_jax.data.trex: error: {err}")
  io_utils.atomic_write_json(flags.FLAGS.out, [list(t) for t in triplets])
  print(f"wrote {len(triplets)} filtered triplets to {flags.FLAGS.out}")


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("trex_dir", None, "Folder of the original T-REx JSON files.")
  flags.DEFINE_string("out", None, "The filtered triplets JSON to write (data.trex_path).")
  flags.mark_flags_as_required(["trex_dir", "out"])
  app.run(main)
