"""Every notebook in colabs/ runs headlessly on CPU with tiny settings (IML_COLAB_TINY=1)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = {"quickstart.ipynb": "IML gap", "grad_alignment.ipynb": "cosine between the four examples' gradients",
             "results.ipynb": "# Run report"}


def notebook_code(path: str) -> str:
  """The code cells as one script; shell (`!`) and magic (`%`) lines are Colab-only."""
  cells = json.load(open(path))["cells"]
  lines = [line for cell in cells if cell["cell_type"] == "code" for line in "".join(cell["source"]).split("\n")
           if not line.lstrip().startswith(("!", "%"))]
  return "\n".join(lines) + "\n"


# The alignment notebook trains at several batch sizes (about 100 s on 2 cores): a slow test, so that CI keeps
# the reduced default's headline check within its 20 minutes.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "grad_alignment.ipynb" else n
                                  for n in sorted(NOTEBOOKS)])
def test_notebook_executes(name, tmp_path):
  script = tmp_path / "notebook.py"
  script.write_text(notebook_code(os.path.join(ROOT, "colabs", name)))
  env = {**os.environ, "IML_COLAB_TINY": "1", "IML_COLAB_WORKDIR": str(tmp_path / "runs"), "MPLBACKEND": "Agg",
         "XLA_FLAGS": ""}
  result = subprocess.run([sys.executable, str(script)], cwd=os.path.join(ROOT, "colabs"), env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert NOTEBOOKS[name] in result.stdout
  assert "1 CPU device(s)" in result.stdout


def test_notebooks_are_valid_and_have_no_stored_outputs():
  for name in NOTEBOOKS:
    notebook = json.load(open(os.path.join(ROOT, "colabs", name)))
    assert notebook["nbformat"] == 4
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    compile(notebook_code(os.path.join(ROOT, "colabs", name)), name, "exec")
