"""Every notebook in colabs/ runs headlessly on CPU with tiny settings (IML_COLAB_TINY=1)."""

import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = {
  "quickstart.ipynb": "IML gap",
  "grad_alignment.ipynb": "cosine between the four examples' gradients",
  "results.ipynb": "# Run report",
}


def notebook_code(path: str, cells: int | None = None) -> str:
  """The code cells (the first `cells` of them) as one script; shell (`!`) and magic (`%`) lines are Colab-only."""
  code = [cell for cell in json.load(open(path))["cells"] if cell["cell_type"] == "code"][:cells]
  lines = [
    line for cell in code for line in "".join(cell["source"]).split("\n") if not line.lstrip().startswith(("!", "%"))
  ]
  return "\n".join(lines) + "\n"


def libtpu_stand_in_version() -> str:
  """The libtpu release installed jax's tpu extra pins (`libtpu==0.0.42.*` -> 0.0.42)."""
  (pin,) = [r for r in importlib.metadata.requires("jax") if r.startswith("libtpu") and 'extra == "tpu"' in r]
  return pin.split("==")[1].split(";")[0].strip().removesuffix(".*")


def _colab_runtime(tmp_path, tpu: bool):
  """A simulated Colab runtime: a fresh environment that sees this machine's packages (as Colab's preinstalled
  ones), a `google.colab` module imported before the notebook runs, /content in a temporary directory and, for
  a TPU runtime, libtpu preinstalled (a stand-in of the version jax[tpu] pins) and TPU_ACCELERATOR_TYPE set."""
  runtime = tmp_path / "colab"
  subprocess.run(
    [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(runtime / "env")], check=True
  )
  (runtime / "modules" / "google" / "colab").mkdir(parents=True)
  (runtime / "modules" / "google" / "colab" / "__init__.py").write_text('"""Stand-in for Colab\'s module."""\n')
  (runtime / "modules" / "google" / "colab" / "output.py").write_text('"""Imported by jax\'s Colab debugger."""\n')
  (runtime / "content").mkdir()
  env = {"PYTHONPATH": str(runtime / "modules"), "IML_COLAB_HOME": str(runtime / "content"), "IML_COLAB_REPO_URL": ROOT}
  if not tpu:  # a CPU runtime has no libtpu, which this machine may have (the test extra's, for tpu_plan)
    (runtime / "modules" / "sitecustomize.py").write_text('import sys\n\nsys.modules["libtpu"] = None\n')
  if tpu:
    site = next((runtime / "env" / "lib").glob("python3*/site-packages"))
    version = libtpu_stand_in_version()
    (site / "libtpu").mkdir()
    (site / "libtpu" / "__init__.py").write_text("")
    (site / f"libtpu-{version}.dist-info").mkdir()
    (site / f"libtpu-{version}.dist-info" / "METADATA").write_text(
      f"Metadata-Version: 2.1\nName: libtpu\nVersion: {version}\n"
    )
    env["TPU_ACCELERATOR_TYPE"] = "v5litepod-1"
  return str(runtime / "env" / "bin" / "python"), env, runtime / "content" / "iml-jax"  # python, variables, clone


# The alignment notebook trains at several batch sizes (about 100 s on 2 cores): a slow test, so that CI keeps
# the reduced default's headline check within its 20 minutes.
# Each notebook's Colab branch on a CPU runtime; on a TPU runtime the setup and devices cells of one (what differs);
# the cheapest notebook also from the checkout (slow: the same cells as its Colab CPU run).
@pytest.mark.parametrize(
  "name, runtime",
  [
    pytest.param(n, "colab_cpu", marks=[pytest.mark.slow] if n == "grad_alignment.ipynb" else [])
    for n in sorted(NOTEBOOKS)
  ]
  + [("results.ipynb", "colab_tpu"), pytest.param("results.ipynb", "local", marks=pytest.mark.slow)],
)
def test_notebook_executes(name, runtime, tmp_path):
  """The Colab branch clones this checkout into /content and installs it, keeping the preinstalled jax stack (this
  machine's, within setup.py's ranges) and so asking for no restart; the notebook runs, and its setup cell, run
  again, reuses the clone (no nested copy)."""
  code = notebook_code(os.path.join(ROOT, "colabs", name), cells=2 if runtime == "colab_tpu" else None)
  setup_cell = next(c for c in json.load(open(os.path.join(ROOT, "colabs", name)))["cells"] if c["cell_type"] == "code")
  script = tmp_path / "notebook.py"
  env = {
    **os.environ,
    "IML_COLAB_TINY": "1",
    "IML_COLAB_WORKDIR": str(tmp_path / "runs"),
    "MPLBACKEND": "Agg",
    "XLA_FLAGS": xla_flags.for_tests(devices=1),
  }
  python, cwd = sys.executable, os.path.join(ROOT, "colabs")
  if runtime.startswith("colab"):
    python, colab_env, repo = _colab_runtime(tmp_path, tpu=runtime == "colab_tpu")
    env.update(colab_env)
    code = (
      "import google.colab\n"
      + code
      + "".join(setup_cell["source"])
      + "\nimport iml_jax\nprint('iml_jax from', iml_jax.__file__)\n"
    )
    cwd = str(tmp_path / "colab" / "content")
  script.write_text(code)
  result = subprocess.run([python, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert runtime == "colab_tpu" or NOTEBOOKS[name] in result.stdout
  assert "1 CPU device(s)" in result.stdout
  if runtime.startswith("colab"):
    assert result.stdout.count(f"repository: {repo} ") == 2  # the second run of the setup cell reuses the clone
    assert f"runtime: jax extra {'[tpu]' if runtime == 'colab_tpu' else 'none'}\n" in result.stdout
    stack = f"jax {importlib.metadata.version('jax')}, jaxlib {importlib.metadata.version('jaxlib')}"
    stack += f", libtpu {libtpu_stand_in_version()}" if runtime == "colab_tpu" else ""
    assert result.stdout.count(f"jax stack: keeping preinstalled {stack}\n") == 2
    assert f"iml_jax from {repo}/iml_jax/__init__.py" in result.stdout
    assert not (repo / "iml-jax").exists() and not (repo / "colabs" / "iml-jax").exists()


def test_every_notebook_has_the_same_setup_cell():
  cells = {
    name: next(c for c in json.load(open(os.path.join(ROOT, "colabs", name)))["cells"] if c["cell_type"] == "code")[
      "source"
    ]
    for name in NOTEBOOKS
  }
  assert len({"".join(source) for source in cells.values()}) == 1
  assert sum(line.startswith('REPO_URL = "') for line in cells["quickstart.ipynb"]) == 1


def test_notebooks_are_valid_and_have_no_stored_outputs():
  for name in NOTEBOOKS:
    notebook = json.load(open(os.path.join(ROOT, "colabs", name)))
    assert notebook["nbformat"] == 4
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    compile(notebook_code(os.path.join(ROOT, "colabs", name)), name, "exec")
