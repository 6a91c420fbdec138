"""The Colab setup cell's install: a runtime's preinstalled jax stack stays when it satisfies iml-jax's ranges.

Colab ships jax and jaxlib, with libtpu on TPU runtimes and the CUDA plugin on GPU runtimes. Replacing a package the
kernel may already have loaded takes a session restart, so the cell pins a compatible preinstalled stack in place
(pip constraints) and asks for a restart only when pip still changes a preinstalled package. The cell loads this
file from the clone before iml-jax is installed: it imports only the standard library and `packaging`."""

import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# jax and the native packages built for one jax release: kept or replaced together.
STACK = ("jax", "jaxlib", "libtpu", "jax-cuda12-plugin")


def installed_versions() -> dict[str, str]:
  """{canonical name: version} of the installed distributions; where one is installed twice, the one Python imports
  (the first on sys.path)."""
  versions = {}
  for dist in importlib.metadata.distributions():
    if name := dist.metadata["Name"]:
      versions.setdefault(canonicalize_name(name), dist.version)
  return versions


def _applicable(requires: list[str], extras) -> list[Requirement]:
  """The requirements among `requires` (Requires-Dist lines) that hold with these extras on this platform."""
  requirements = [Requirement(line) for line in requires]
  return [r for r in requirements if r.marker is None or any(r.marker.evaluate({"extra": e}) for e in ("", *extras))]


def stack_to_keep(
  requires_dist: list[str], extras, installed: dict[str, str], jax_requires: list[str]
) -> tuple[dict[str, str], str]:
  """({name: version} of the preinstalled stack to pin as it is, why).

  The stack is kept whole when every member the install needs (iml-jax's requirements with `extras`, and installed
  jax's own for the jax extras iml-jax asks for, e.g. its libtpu release) is installed within range; otherwise
  nothing is pinned and pip installs a matching stack. `jax_requires`: installed jax's Requires-Dist lines."""
  wanted = _applicable(requires_dist, extras)
  if "jax" not in installed:
    return {}, "no jax preinstalled"
  jax_extras = set().union(*(r.extras for r in wanted if canonicalize_name(r.name) == "jax"))
  stack = [r for r in wanted + _applicable(jax_requires, jax_extras) if canonicalize_name(r.name) in STACK]
  for requirement in stack:
    name = canonicalize_name(requirement.name)
    if name not in installed:
      return {}, f"{name} is not preinstalled"
    if not requirement.specifier.contains(installed[name], prereleases=True):
      return {}, f"preinstalled {name} {installed[name]} is outside {requirement.specifier}"
  keep = {canonicalize_name(r.name): installed[canonicalize_name(r.name)] for r in stack}
  return keep, "keeping preinstalled " + ", ".join(f"{name} {version}" for name, version in keep.items())


def replaced_packages(changes: dict[str, str], installed: dict[str, str]) -> list[str]:
  """'name old → new' for each preinstalled package that the planned `changes` ({name: version}) replace."""
  changes = {canonicalize_name(name): version for name, version in changes.items()}
  return [f"{name} {installed[name]} → {version}" for name, version in changes.items() if name in installed]


def restart_note(replaced: list[str]) -> str | None:
  """What the cell stops with when the install replaced preinstalled packages (a loaded module keeps its old code
  until the session restarts); None when nothing preinstalled changed."""
  if not replaced:
    return None
  return (
    "Replaced preinstalled packages (" + ", ".join(replaced) + "): restart the session (Runtime → Restart session), "
    "then run the notebook again."
  )


def install(repo: str, extra: str) -> tuple[str, list[str]]:
  """pip-installs the clone `repo` (editable) with `extra` ("" or an extra's name), keeping a compatible
  preinstalled stack; returns (what happened to the stack, the preinstalled packages replaced)."""
  pip = [sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation"]
  project = f"{repo}[{extra}]" if extra else repo

  def dry_run(*args) -> dict:
    result = subprocess.run([*pip, "--dry-run", "--report", "-", *args], capture_output=True, text=True)
    if result.returncode:
      raise SystemExit(f"pip cannot install iml-jax here: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(result.stdout)

  (metadata,) = [item["metadata"] for item in dry_run("--no-deps", "-e", project)["install"]]
  installed = installed_versions()
  jax_requires = (importlib.metadata.requires("jax") or []) if "jax" in installed else []
  keep, why = stack_to_keep(metadata.get("requires_dist", []), [extra] if extra else [], installed, jax_requires)
  with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
    constraints.write("".join(f"{name}=={version}\n" for name, version in keep.items()))
  try:
    plan = dry_run("-c", constraints.name, "-e", project)["install"]
    changes = {i["metadata"]["name"]: i["metadata"]["version"] for i in plan if i["metadata"]["name"] != "iml-jax"}
    if changes:
      subprocess.run([*pip, "-c", constraints.name, *(f"{n}=={v}" for n, v in changes.items())], check=True)
  finally:
    os.unlink(constraints.name)
  subprocess.run([*pip, "--no-deps", "-e", repo], check=True)
  return why, replaced_packages(changes, installed)
