"""Every citation in code, configs, notebooks and docs points to a file and section that the repository holds."""

import os
import re

from test_experiment import ROOT

_TEXT = (".py", ".md", ".ipynb", ".sh", ".cff", ".txt", ".ini")


def _files():
  for directory, dirs, names in os.walk(ROOT):
    dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("build", "__pycache__", "mutants")]
    for name in names:
      if name.endswith(_TEXT) and "egg-info" not in directory:
        yield os.path.join(directory, name)


def test_no_file_cites_a_document_outside_the_repository():
  outside = re.compile(r"STUDY\.md|CPU_SCALE\.md|STACK\.md|shared/reference|\.\./shared")
  offenders = [
    os.path.relpath(f, ROOT) for f in _files() if f != __file__ and outside.search(open(f, encoding="utf-8").read())
  ]
  assert not offenders


def test_cited_docs_and_sections_exist():
  headings = {}
  for name in os.listdir(os.path.join(ROOT, "docs")):
    text = open(os.path.join(ROOT, "docs", name), encoding="utf-8").read()
    headings[name] = set(re.findall(r"^#+ (§[0-9.]+)", text, re.M))
  cited = re.compile(r"docs/([a-z_]+\.md)((?:[^\n§]{0,3})(?:,? ?§[0-9][0-9.]*)*)")
  missing = []
  for path in _files():
    for doc, sections in cited.findall(open(path, encoding="utf-8").read()):
      if doc not in headings:
        missing.append((os.path.relpath(path, ROOT), doc))
      for section in re.findall(r"§[0-9][0-9.]*[0-9]|§[0-9]", sections):
        if section not in headings[doc]:
          missing.append((os.path.relpath(path, ROOT), doc, section))
  assert not missing
  assert "§7.3" in headings["study.md"] and len(headings["study.md"]) > 30
