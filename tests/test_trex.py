"""The T-REx pipeline on small JSON files written here: triplets, filtering, QA pairs, seeds, errors."""

import json
import os
import subprocess
import sys

import pytest

from iml_jax.data import trex
from iml_jax.errors import IMLError

# Not imported from test_experiment: the subprocess of test_same_works_in_every_process imports this module.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def triple(subject, predicate, obj):
  return {
    "subject": {"surfaceform": subject, "uri": "x"},
    "object": {"surfaceform": obj, "uri": "y"},
    "predicate": {"surfaceform": "p", "uri": f"http://www.wikidata.org/prop/direct/{predicate}"},
  }


def write_dump(folder, documents_per_file):
  os.makedirs(folder, exist_ok=True)
  for i, documents in enumerate(documents_per_file):
    with open(os.path.join(folder, f"re-nlg_{i}.json"), "w") as handle:
      json.dump([{"docid": f"Q{j}", "triples": triples} for j, triples in enumerate(documents)], handle)


WORK = [
  triple("The Long Road (novel)", "P50", "Jane Q. Austen"),  # author: first name "Jane"
  triple("The Long Road (novel)", "P577", "1923-05-01T00:00:00Z"),  # -> 1920s
  triple("The Long Road (novel)", "P407", "English"),
  triple("The Long Road (novel)", "P364", "French"),  # same question as P407: merged, first kept
  triple("The Long Road (novel)", "P136", "adventure (genre)"),
  triple("The Long Road (novel)", "P57", "Madonna"),  # a one-word person: dropped
  triple("The Long Road (novel)", "P58", "J Smith"),  # a one-letter first word: dropped
  triple("The Long Road (novel)", "P6", "ignored predicate"),
]


def test_triplets_filtering_and_qa_pairs(tmp_path):
  write_dump(
    tmp_path / "dump",
    [
      [WORK[:4]],
      [
        WORK[4:],
        [triple("he", "P50", "A B"), triple("he", "P136", "x")],
        [
          triple("Lonely", "P136", "drama"),
          triple("Pronoun Object", "P136", "it"),
          triple("Pronoun Object", "P407", "German"),
        ],
      ],
    ],
  )
  triplets = trex.read_triplets(str(tmp_path / "dump"))
  assert ("The Long Road (novel)", "English", "P407") in triplets and len(triplets) == len(set(triplets))
  filtered = trex.filter_triplets(triplets)
  subjects = {s for s, _, _ in filtered}
  assert "he" not in subjects and "Lonely" not in subjects  # pronoun subject; a subject seen once
  assert ("Pronoun Object", "it", "P136") not in filtered
  (work,) = trex.trex_knowledge_base(filtered, seed=0, max_entities=1)
  assert work.name == "The Long Road"
  assert dict(work.qa) == {
    "First name of the author of {}?": "Jane",
    "When was {} published or released?": "1920s",
    "In which language was {} published?": dict(work.qa)["In which language was {} published?"],
    "What is the genre of {}?": "adventure",
  }
  assert dict(work.qa)["In which language was {} published?"] in ("English", "French")
  assert [q for q, _ in work.qa] == sorted(q for q, _ in work.qa)


def _works(n, predicates=("P50", "P136", "P407", "P577", "P921")):
  """(subject, object, predicate) of n works; odd works have a P577 date without a year."""

  def value(i, p):
    if p == "P50":
      return f"Name{i} Surname"
    if p == "P577":
      return "no year" if i % 2 else f"{1800 + i} AD"
    return f"{p} value {i}"

  return [(f"Work {i}", value(i, p), p) for i in range(n) for p in predicates]


def test_years_without_digits_are_skipped_not_their_neighbours():
  works = trex.trex_knowledge_base(_works(6), seed=0, max_entities=6)
  for work in works:
    index = int(work.name.split()[1])
    questions = dict(work.qa)
    assert ("When was {} published or released?" in questions) == (index % 2 == 0)
    assert len(questions) == (5 if index % 2 == 0 else 4)
  assert dict(works[0].qa)["When was {} published or released?"] == "18 century"


def test_selection_depends_on_the_seed_and_is_deterministic():
  triplets = _works(40)
  first = trex.trex_knowledge_base(triplets, seed=1, max_entities=10)
  assert first == trex.trex_knowledge_base(triplets, seed=1, max_entities=10)
  assert {w.name for w in first} != {w.name for w in trex.trex_knowledge_base(triplets, seed=2, max_entities=10)}
  with pytest.raises(IMLError, match="yield only 40 works with >= 4 questions; config field data.num_entities"):
    trex.trex_knowledge_base(triplets, seed=1, max_entities=41)


def test_malformed_files_name_the_file(tmp_path):
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "a.json").write_text('[{"triples": [')
  with pytest.raises(IMLError, match=r"T-REx file .*a.json is not valid JSON"):
    trex.read_triplets(str(tmp_path / "bad"))
  (tmp_path / "bad" / "a.json").write_text(json.dumps([{"triples": [{"subject": {}}]}]))
  with pytest.raises(IMLError, match=r"a.json, document 0: expected triples with subject.surfaceform"):
    trex.read_triplets(str(tmp_path / "bad"))
  (tmp_path / "triplets.json").write_text(json.dumps([["a", "b"]]))
  with pytest.raises(IMLError, match="expected a list of \\[subject, object, predicate\\]"):
    trex.load_triplets(str(tmp_path / "triplets.json"))
  with pytest.raises(IMLError, match="config field data.trex_path"):
    trex.load_triplets(str(tmp_path / "missing.json"))


def test_cli_then_a_define_run_on_trex(tmp_path):
  from iml_jax import experiment
  from test_experiment import load_config

  eight = ("P50", "P136", "P407", "P577", "P921", "P123", "P179", "P840")  # enough questions to stratify the split
  works = [triple(subject, predicate, obj) for subject, obj, predicate in _works(70, eight)]
  write_dump(tmp_path / "dump", [[works[i : i + 8] for i in range(0, 560, 8)]])
  out = tmp_path / "triplets.json"
  result = subprocess.run(
    [sys.executable, "-m", "iml_jax.data.trex", f"--trex_dir={tmp_path / 'dump'}", f"--out={out}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  assert len(json.load(open(out))) == 560
  config = load_config(os.path.join(ROOT, "configs", "trex_2stage.py"), "tiny")
  config.data.trex_path = str(out)
  summary = experiment.run(config, str(tmp_path / "run"))
  assert "d1consis" in summary["subsets"]
  predictions = open(tmp_path / "run" / "seed_0" / "s2seed_0" / "stage2" / "predictions.jsonl").read()
  assert "published or released?" in predictions or "genre of" in predictions


def test_same_works_in_every_process():
  code = (
    "import json, sys; sys.path.insert(0, 'tests'); from test_trex import _works; from iml_jax.data import trex; "
    "print(json.dumps([[w.name, w.qa] for w in trex.trex_knowledge_base(_works(40), seed=5, max_entities=12)]))"
  )
  outputs = [
    subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      cwd=ROOT,
      env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
    )
    for seed in ("1", "2")
  ]
  assert outputs[0].returncode == 0, outputs[0].stderr
  assert outputs[0].stdout == outputs[1].stdout and len(json.loads(outputs[0].stdout)) == 12
