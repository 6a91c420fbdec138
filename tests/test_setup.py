"""setup.py asks for ranges and constraints.txt holds the exact tested set: every requirement has its pin, each pin
lies within its range, and the environment the tests run in is that set."""

import importlib.metadata
import os
import re
import runpy

import pytest
import setuptools
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The CUDA wheels are neither installed nor tested here (no GPU): constraints.txt leaves them open.
UNPINNED_EXTRAS = ("gpu",)


def setup_arguments() -> dict:
  """The keyword arguments setup.py passes to setuptools.setup."""
  captured = {}
  original = setuptools.setup
  setuptools.setup = lambda **kwargs: captured.update(kwargs)
  try:
    runpy.run_path(os.path.join(ROOT, "setup.py"))
  finally:
    setuptools.setup = original
  return captured


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
  return setup_arguments()


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
  lines = [line for line in open(os.path.join(ROOT, "constraints.txt")) if line.strip() and not line.startswith("#")]
  assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.]*\n", line) for line in lines), "name==version lines"
  pairs = [line.strip().split("==") for line in lines]
  assert len({canonicalize_name(name) for name, _ in pairs}) == len(pairs), "one pin per package"
  return {canonicalize_name(name): version for name, version in pairs}


def test_every_requirement_is_a_range_and_its_pin_lies_within_it(setup_kwargs, pins):
  extras = {name: reqs for name, reqs in setup_kwargs["extras_require"].items() if name not in UNPINNED_EXTRAS}
  requirements = [Requirement(r) for r in [*setup_kwargs["install_requires"], *sum(extras.values(), [])]]
  outside = [
    f"{r} (pinned {pins.get(canonicalize_name(r.name))})"
    for r in requirements
    if not r.specifier.contains(pins.get(canonicalize_name(r.name), "none"), prereleases=True)
  ]
  assert not outside
  assert not [str(r) for r in requirements if any(s.operator == "==" for s in r.specifier)], "ranges, not pins"
  assert "tensorboard" in extras and pins["tensorboard"] == "2.21.0"


def test_the_tests_run_on_the_pinned_set(pins):
  """What CI installs with `-c constraints.txt`; a local build label (torch's +cpu) aside."""
  differ = []
  for name, version in pins.items():
    try:
      installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      continue  # an extra this environment does not install (tensorboard)
    if Version(installed).public != Version(version).public:
      differ.append(f"{name} {installed} (constraints.txt: {version})")
  assert not differ
  assert "jax" in pins and importlib.metadata.version("jax") == pins["jax"]
