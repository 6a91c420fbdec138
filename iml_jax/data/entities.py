"""Knowledge bases of people with the CVDB attributes: an offline synthetic one and the real CSV.

Both give `Entity(name, qa)` with the study's six CVDB questions (docs/study.md §3.6); `{}` in a question
stands for the person's name or alias.
"""

import csv
import dataclasses
import re

import numpy as np

from iml_jax import io_utils
from iml_jax.errors import IMLError

QUESTION_TEMPLATES = {
  "gender": "What was the gender of {}?",
  "birth": "When was {} born?",
  "death": "When did {} die?",
  "region": "In which region did {} live?",
  "occupation": "What did {} do?",
  "nationality": "What was the nationality of {}?",
}


@dataclasses.dataclass(frozen=True)
class Entity:
  name: str
  qa: tuple[tuple[str, str], ...]  # (question template with "{}", answer)


def convert_year(year: int) -> str:
  """CVDB's year anonymisation: centuries up to 1900, decades in the 1900s, years from 2000."""
  if year <= 1900:
    century = f"{(abs(year) + 99) // 100} century"
    return century + " BC" if year < 0 else century
  if year < 2000:
    return f"{year // 10 * 10}s"
  return str(year)


def _entity(name: str, attributes: dict[str, str]) -> Entity:
  # The study keeps only the first ';'-separated answer when it builds a QA pair (bug #18: reproduce).
  return Entity(name, tuple((QUESTION_TEMPLATES[k], attributes[k].split(";")[0]) for k in QUESTION_TEMPLATES))


# --- Synthetic knowledge base (the offline default) -------------------------------------------
_FIRST_NAMES = {
  "Male": [
    "Adrian",
    "Bruno",
    "Carlos",
    "Dmitri",
    "Emil",
    "Felix",
    "Gustav",
    "Hugo",
    "Ivan",
    "Jonas",
    "Karl",
    "Leon",
    "Marco",
    "Nikolai",
    "Oscar",
    "Pablo",
    "Quentin",
    "Rafael",
    "Stefan",
    "Tomas",
    "Umberto",
    "Viktor",
    "Walter",
    "Xavier",
    "Yusuf",
    "Zoltan",
    "Anton",
    "Boris",
    "Cyril",
    "Dario",
    "Erik",
    "Fabian",
    "Georg",
    "Henrik",
    "Igor",
    "Jakob",
    "Kenji",
    "Lars",
    "Mateo",
    "Nils",
  ],
  "Female": [
    "Agnes",
    "Beatrix",
    "Clara",
    "Dora",
    "Elena",
    "Frida",
    "Greta",
    "Helena",
    "Irene",
    "Judith",
    "Karin",
    "Lucia",
    "Marta",
    "Nadia",
    "Olga",
    "Paula",
    "Rosa",
    "Sofia",
    "Tamara",
    "Ursula",
    "Vera",
    "Wanda",
    "Yara",
    "Zora",
    "Alma",
    "Berta",
    "Celia",
    "Dalia",
    "Edith",
    "Flora",
    "Gisela",
    "Hanna",
    "Ida",
    "Jana",
    "Klara",
    "Lena",
    "Mira",
    "Nora",
    "Olivia",
    "Petra",
  ],
}
_LAST_NAMES = [
  "Abbott",
  "Bauer",
  "Castillo",
  "Dubois",
  "Eriksen",
  "Fischer",
  "Gallo",
  "Hansen",
  "Ibarra",
  "Jansen",
  "Kowalski",
  "Lindqvist",
  "Moreau",
  "Novak",
  "Olsen",
  "Petrov",
  "Quiroga",
  "Rossi",
  "Schmidt",
  "Tanaka",
  "Ulrich",
  "Varga",
  "Weber",
  "Xu",
  "Yilmaz",
  "Zimmermann",
  "Almeida",
  "Berger",
  "Costa",
  "Dimitrov",
  "Esposito",
  "Ferreira",
  "Gruber",
  "Horvat",
  "Ivanova",
  "Jovanovic",
  "Keller",
  "Lehmann",
  "Marino",
  "Nielsen",
  "Ortega",
  "Pavlov",
  "Ramos",
  "Santos",
  "Toth",
  "Urban",
  "Vogel",
  "Wagner",
  "Young",
  "Zeller",
  "Arnold",
  "Brandt",
  "Conti",
  "Duarte",
  "Engel",
  "Fuchs",
  "Greco",
  "Hoffmann",
  "Ito",
  "Janssen",
  "Klein",
  "Lang",
  "Meyer",
  "Nowak",
  "Otto",
  "Popescu",
  "Romano",
  "Sato",
  "Torres",
  "Vidal",
]
_REGIONS = {
  "Western Europe": ["France", "Germany", "Netherlands", "Belgium", "Switzerland"],
  "Southern Europe": ["Italy", "Spain", "Portugal", "Greece"],
  "Northern Europe": ["Sweden", "Norway", "Denmark", "United Kingdom"],
  "Eastern Europe": ["Russia", "Poland", "Hungary", "Romania"],
  "Northern America": ["United States", "Canada"],
  "Latin America": ["Mexico", "Brazil", "Argentina", "Chile"],
  "Eastern Asia": ["Japan", "China", "Korea"],
  "Western Asia": ["Turkey", "Iran", "Israel"],
}
_OCCUPATIONS = [
  "actor",
  "painter",
  "writer",
  "politician",
  "composer",
  "militar",
  "religious",
  "scientist",
  "singer",
  "architect",
  "athlete",
  "philosopher",
  "physician",
  "journalist",
  "poet",
]


def synthetic_capacity() -> int:
  """How many people the synthetic knowledge base can hold (one per first and last name)."""
  return sum(len(firsts) for firsts in _FIRST_NAMES.values()) * len(_LAST_NAMES)


def synthetic_knowledge_base(num_entities: int, seed: int) -> list[Entity]:
  """`num_entities` fictional people with CVDB-style facts, a pure function of `seed`."""
  rng = np.random.default_rng([seed, 2024])
  full_names = [
    (first, last, gender) for gender, firsts in _FIRST_NAMES.items() for first in firsts for last in _LAST_NAMES
  ]
  if num_entities > synthetic_capacity():
    raise IMLError(
      f"config field data.num_entities = {num_entities}: the synthetic knowledge base has "
      f"at most {synthetic_capacity()} people"
    )
  chosen = rng.choice(len(full_names), size=num_entities, replace=False)
  regions = sorted(_REGIONS)
  entities = []
  for index in sorted(chosen):
    first, last, gender = full_names[index]
    # Mostly modern people, like the most-read CVDB entries, with a tail reaching into antiquity.
    birth = int(1960 - rng.gamma(2.0, 120.0))
    death = min(2018, birth + int(rng.integers(25, 95)))
    region = regions[rng.integers(len(regions))]
    nations = _REGIONS[region]
    entities.append(
      _entity(
        f"{first} {last}",
        {
          "gender": gender,
          "birth": convert_year(birth),
          "death": convert_year(death),
          "region": region,
          "occupation": _OCCUPATIONS[rng.integers(len(_OCCUPATIONS))],
          "nationality": nations[rng.integers(len(nations))],
        },
      )
    )
  return entities


# --- The real CVDB file ---------------------------------------------------------------------
CVDB_COLUMNS = (
  "name",
  "birth",
  "death",
  "gender",
  "level3_main_occ",
  "string_citizenship_raw_d",
  "un_region",
  "wiki_readers_2015_2018",
)
_WORDS = re.compile(r"^[\w\s_]+$")
_WORDS_APOSTROPHE = re.compile(r"^[\w\s_']+$")


def _nationality(raw: str) -> str:
  entries = [e.strip("'\"[] ").replace("_", " ") for e in raw.split("_")]
  return ";".join(e for e in entries if e)


def load_cvdb(path: str, num_entities: int, equalize_gender: bool = True, encoding: str = "ISO-8859-1") -> list[Entity]:
  """The study's CVDB pipeline: filter, keep the most-read people (equal numbers of men and women
  by default), convert years. Raises IMLError naming the file and line on malformed input."""
  if not io_utils.exists(path):
    raise IMLError(
      f"CVDB file {path} does not exist (config field data.cvdb_path): download "
      "cross-verified-database.csv and point the field at it"
    )
  people = {}
  with io_utils.open_text(path, encoding) as handle:
    reader = csv.DictReader(handle)
    missing = [c for c in CVDB_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
      raise IMLError(f"CVDB file {path}: missing column(s) {', '.join(missing)}; expected {', '.join(CVDB_COLUMNS)}")
    for line, row in enumerate(reader, start=2):
      if any(not (row[c] or "").strip() for c in CVDB_COLUMNS):
        continue
      name = row["name"].strip()
      occupation = row["level3_main_occ"].replace("_", " ").strip()
      citizenship = row["string_citizenship_raw_d"].strip()
      if not (_WORDS.match(name) and _WORDS.match(occupation) and _WORDS_APOSTROPHE.match(citizenship)):
        continue
      try:
        birth, death = int(float(row["birth"])), int(float(row["death"]))
        readers = float(row["wiki_readers_2015_2018"])
      except ValueError as err:
        raise IMLError(
          f"CVDB file {path}, line {line}: birth, death and wiki_readers_2015_2018 must be numbers ({err})"
        ) from None
      gender = row["gender"].strip()
      if name in people:
        people[name] = None  # the study drops every duplicated name
        continue
      people[name] = (
        readers,
        gender,
        {
          "gender": gender,
          "birth": convert_year(birth),
          "death": convert_year(death),
          "region": row["un_region"].strip(),
          "occupation": occupation,
          "nationality": _nationality(citizenship),
        },
      )
  rows = [
    (readers, name, gender, attrs)
    for name, value in people.items()
    if value is not None
    for readers, gender, attrs in [value]
  ]
  rows.sort(key=lambda r: (-r[0], r[1]))
  if equalize_gender:
    per_gender = num_entities // 2
    men = [r for r in rows if r[2] == "Male"][:per_gender]
    women = [r for r in rows if r[2] == "Female"][:per_gender]
    chosen = men + women
  else:
    chosen = rows[:num_entities]
  if len(chosen) < (num_entities // 2 * 2 if equalize_gender else num_entities):
    raise IMLError(
      f"CVDB file {path}: only {len(chosen)} usable people, config field data.num_entities asks for {num_entities}"
    )
  return [_entity(name.replace("_", " "), attrs) for _, name, _, attrs in sorted(chosen, key=lambda r: r[1])]
