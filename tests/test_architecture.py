"""The package's structure: no import cycles (imports inside functions count), and reporting stays light."""

import ast
import os
import subprocess
import sys

from test_experiment import ROOT

PACKAGE = os.path.join(ROOT, "iml_jax")


def _module_files() -> dict[str, str]:
  modules = {}
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        modules[module.removesuffix(".__init__")] = path
  return modules


def import_graph() -> dict[str, set[str]]:
  """{module: the iml_jax modules it imports anywhere in its source}."""
  modules = _module_files()
  graph = {}
  for module, path in modules.items():
    imported = set()
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.Import):
        imported |= {alias.name for alias in node.names}
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        # `from iml_jax import stage` imports the module iml_jax.stage; `from iml_jax.stage import f` iml_jax.stage
        imported |= {
          f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
          for alias in node.names
        }
    graph[module] = {name for name in imported if name in modules and name != module}
  return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state, path = {}, []

  def visit(module):
    state[module] = "open"
    path.append(module)
    for successor in sorted(graph[module]):
      if state.get(successor) == "open":
        return path[path.index(successor) :] + [successor]
      if successor not in state and (cycle := visit(successor)):
        return cycle
    state[module] = "closed"
    path.pop()
    return None

  for module in sorted(graph):
    if module not in state and (cycle := visit(module)):
      return cycle
  return None


def test_no_import_cycles():
  cycle = find_cycle(import_graph())
  assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
  graph = import_graph()
  assert "iml_jax.experiment" in graph["iml_jax.sweep"]  # imported inside run_sweep only
  graph["iml_jax.experiment"] = graph["iml_jax.experiment"] | {"iml_jax.sweep"}
  cycle = find_cycle(graph)
  assert cycle[0] == cycle[-1] and {"iml_jax.sweep", "iml_jax.experiment"} <= set(cycle)


def test_reporting_imports_no_training_code():
  """A report, a sweep report, reading a workdir and the study's model table load neither Orbax, Flax,
  tensorboardX nor the stage loop."""
  heavy = ("orbax.checkpoint", "flax.linen", "tensorboardX", "iml_jax.stage", "iml_jax.train", "iml_jax.checkpointing")
  code = (
    "import sys\nimport iml_jax.report, iml_jax.sweep_report, iml_jax.workdir, iml_jax.models.families\n"
    f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
  )
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "[]"


MODEL_CLASSES = {"DecoderLM", "T5", "MLP", "ConvNet"}


def test_only_the_model_registry_tells_models_apart():
  """Outside models/, no module imports a model class to branch on it: what a model reads and how it runs is
  its spec in models/registry.py."""
  offenders = []
  for module, path in _module_files().items():
    if module.startswith("iml_jax.models"):
      continue
    for node in ast.walk(ast.parse(open(path).read())):
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("iml_jax.models"):
        offenders += [f"{module} imports {alias.name}" for alias in node.names if alias.name in MODEL_CLASSES]
      if isinstance(node, ast.Attribute) and node.attr in ("is_seq2seq", "reads_arrays"):
        offenders.append(f"{module} reads .{node.attr}")
  assert not offenders


def _reached_from(graph: dict[str, set[str]], module: str) -> set[str]:
  reached, todo = set(), [module]
  while todo:
    for successor in graph[todo.pop()] - reached:
      reached.add(successor)
      todo.append(successor)
  return reached


def test_a_run_report_does_not_depend_on_sweeps():
  """A sweep aggregates runs, never the other way round: a run's report and the training loop import neither the
  sweep nor its report."""
  graph = import_graph()
  for module in ("iml_jax.run_report", "iml_jax.experiment"):
    assert not {"iml_jax.sweep", "iml_jax.sweep_report"} & _reached_from(graph, module), module
