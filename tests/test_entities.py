import csv

import pytest

from iml_jax.data import entities
from iml_jax.errors import IMLError


@pytest.mark.parametrize(
  "year, expected",
  [
    (1900, "19 century"),
    (1222, "13 century"),
    (-122, "2 century BC"),
    (1923, "1920s"),
    (2000, "2000"),
    (2020, "2020"),
    (1901, "1900s"),
    (-1, "1 century BC"),
  ],
)
def test_convert_year(year, expected):
  assert entities.convert_year(year) == expected


def test_synthetic_knowledge_base_is_deterministic_and_cvdb_shaped():
  first = entities.synthetic_knowledge_base(300, seed=0)
  assert first == entities.synthetic_knowledge_base(300, seed=0)
  assert first != entities.synthetic_knowledge_base(300, seed=1)
  assert len({e.name for e in first}) == 300
  for entity in first:
    assert [q for q, _ in entity.qa] == list(entities.QUESTION_TEMPLATES.values())
    answers = dict(zip(entities.QUESTION_TEMPLATES, (a for _, a in entity.qa)))
    assert answers["gender"] in ("Male", "Female")
    for key in ("birth", "death"):
      assert answers[key].endswith(("century", "century BC", "0s")) or answers[key].isdigit()


def test_synthetic_knowledge_base_size_limit():
  with pytest.raises(IMLError, match="data.num_entities"):
    entities.synthetic_knowledge_base(10**6, seed=0)


def _write_cvdb(path, rows, columns=entities.CVDB_COLUMNS):
  with open(path, "w", newline="", encoding="ISO-8859-1") as handle:
    writer = csv.DictWriter(handle, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def _person(
  name, gender, readers, birth="1879.0", death="1955", occupation="physicist", citizenship="Germany_Switzerland"
):
  return dict(
    name=name,
    birth=birth,
    death=death,
    gender=gender,
    level3_main_occ=occupation,
    string_citizenship_raw_d=citizenship,
    un_region="Europe",
    wiki_readers_2015_2018=readers,
  )


def test_load_cvdb_filters_equalises_and_converts(tmp_path):
  path = tmp_path / "cvdb.csv"
  _write_cvdb(
    path,
    [
      _person("Albert_Einstein", "Male", 900, occupation="theoretical_physicist"),
      _person("Marie_Curie", "Female", 800, birth="1867", death="1934", citizenship="Poland_France"),
      _person("Bad@Name", "Male", 9999),  # dropped: character filter
      _person("Dup_Person", "Male", 950),  # dropped: duplicated name
      _person("Dup_Person", "Male", 940),
      _person("No_Death", "Female", 990, death=""),  # dropped: missing value
      _person("Ada_Lovelace", "Female", 700, birth="1815", death="1852", citizenship="United_Kingdom"),
      _person("Minor_Man", "Male", 10, birth="-122", death="-60"),
    ],
  )
  people = entities.load_cvdb(str(path), num_entities=4)
  assert [e.name for e in people] == ["Ada Lovelace", "Albert Einstein", "Marie Curie", "Minor Man"]
  assert people[1].qa[1] == ("When was {} born?", "19 century")
  assert people[1].qa[2] == ("When did {} die?", "1950s")
  assert people[1].qa[4] == ("What did {} do?", "theoretical physicist")
  assert people[1].qa[5] == ("What was the nationality of {}?", "Germany")  # first answer only
  assert people[3].qa[1][1] == "2 century BC"
  with pytest.raises(IMLError, match="only 4 usable people"):
    entities.load_cvdb(str(path), num_entities=6)


def test_load_cvdb_clear_errors(tmp_path):
  with pytest.raises(IMLError, match="does not exist"):
    entities.load_cvdb(str(tmp_path / "missing.csv"), 2)
  path = tmp_path / "cols.csv"
  _write_cvdb(path, [dict(name="x", birth="1")], columns=("name", "birth"))
  with pytest.raises(IMLError, match=r"cols.csv: missing column\(s\) death"):
    entities.load_cvdb(str(path), 2)
  path = tmp_path / "year.csv"
  _write_cvdb(path, [_person("A_B", "Male", 5, birth="eighteen")])
  with pytest.raises(IMLError, match=r"year.csv, line 2: birth, death"):
    entities.load_cvdb(str(path), 2)
