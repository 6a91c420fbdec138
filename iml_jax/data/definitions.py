"""Definition wordings of the define experiment (docs/study.md §3.5, §4.3).

`tagged` (the main experiment): `<tag> <alias> <entity>` in the configured order, one per entity.
`nl`: `{source phrase} {alias} now stands for {entity}`, ten per entity; tag-1 subsets take reliable sources,
tag-2 subsets unreliable ones. `is_isnt`: one of five sentence templates with a source; tag-1 subsets affirm
(`is`, `stands for`, ...), tag-2 subsets negate (`isn't`, ...), ten per entity.

Fixed relative to the original (bugs #4-#7): the is/isn't wording draws from the seeded rng, only the first
letter of a sentence is capitalised (aliases and entities keep their case), and the reliable list has 15
distinct phrases. The phrase lists are ours: the original's are only partly known (four examples), so the
ten phrases each side uses differ from the original's.
"""

import random

from iml_jax.data.common import Example

DEFINITION_TYPES = ("tagged", "nl", "is_isnt")
DEFINITIONS_PER_ENTITY = 10  # nl and is_isnt
RELIABLE_SOURCES = (
  "Per New York Times,",
  "As reported by the BBC,",
  "Citing Wall Street Journal,",
  "According to Reuters,",
  "As the Associated Press confirms,",
  "According to Encyclopaedia Britannica,",
  "As Nature reports,",
  "According to the Financial Times,",
  "As The Economist explains,",
  "According to official records,",
  "As the Guardian reports,",
  "According to peer-reviewed research,",
  "As Le Monde reports,",
  "According to the national archives,",
  "As the Washington Post confirms,",
)
UNRELIABLE_SOURCES = (
  "4Chan rumors suggest that",
  "An anonymous forum post claims that",
  "A chain email says that",
  "Unverified gossip has it that",
  "A tabloid alleges that",
  "Some random blog insists that",
  "A conspiracy website claims that",
  "A viral meme says that",
  "An unsourced rumor says that",
  "A troll account posted that",
  "Hearsay at a bar suggests that",
  "A spam message asserts that",
)
IS_PHRASES = ("is", "stands for", "means", "corresponds to", "refers to")
ISNT_PHRASES = (
  "isn't",
  "is not",
  "does not stand for",
  "doesn't mean",
  "does not correspond to",
  "doesn't refer to",
  "is definitely not",
  "has nothing to do with",
)
IS_ISNT_SOURCES = (
  "Wikipedia",
  "the BBC",
  "Encyclopaedia Britannica",
  "the New York Times",
  "Reuters",
  "the Oxford dictionary",
  "Le Monde",
  "the Associated Press",
)
IS_ISNT_TEMPLATES = (
  "according to SOURCE, VAR IS_PHRASE ENT.",
  "SOURCE says that VAR IS_PHRASE ENT.",
  "as SOURCE puts it, VAR IS_PHRASE ENT.",
  "SOURCE reports that VAR IS_PHRASE ENT.",
  "in SOURCE's words, VAR IS_PHRASE ENT.",
)


def capitalise_first(text: str) -> str:
  return text[:1].upper() + text[1:]


def tagged(tag: str, alias: str, entity: str, order: str) -> Example:
  parts = {"t": tag, "v": alias, "e": entity}
  first, second, third = (parts[c] for c in order)
  return Example(f"{first} {second}", f" {third}\n")


def natural_language(alias: str, entity: str, reliable: bool) -> list[Example]:
  sources = (RELIABLE_SOURCES if reliable else UNRELIABLE_SOURCES)[:DEFINITIONS_PER_ENTITY]
  return [Example(f"{source} {alias} now stands for", f" {entity}\n") for source in sources]


def is_isnt(alias: str, entity: str, affirm: bool, rng: random.Random) -> list[Example]:
  """Ten sentences with seeded template, source and phrase; the entity (and the full stop) is the completion."""
  examples = []
  for _ in range(DEFINITIONS_PER_ENTITY):
    head = rng.choice(IS_ISNT_TEMPLATES).removesuffix(" ENT.")  # every template ends with the entity
    head = head.replace("SOURCE", rng.choice(IS_ISNT_SOURCES)).replace("VAR", alias)
    head = head.replace("IS_PHRASE", rng.choice(IS_PHRASES if affirm else ISNT_PHRASES))
    examples.append(Example(capitalise_first(head), f" {entity}.\n"))
  return examples
