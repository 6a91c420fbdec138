"""A mistake on the command line is one line `<tool>: error: ...`, exit status 2, and nothing written."""

import os
import subprocess
import sys

import pytest

from test_experiment import ROOT

DEFAULT = "--config=configs/default.py"
CASES = {
  "missing config file": (["--config=configs/nope.py"], "--config: config file configs/nope.py does not exist"),
  "syntax error in the config file": (["--config={bad_syntax}"], "config file {bad_syntax}, line 1: SyntaxError"),
  "error raised by the config file": (
    ["--config={bad_name}"],
    "config file {bad_name}, line 2: NameError: name 'undefined_name'",
  ),
  "unknown config argument": ([DEFAULT + ":tiny,bogus"], "unknown config argument(s) ['bogus']; known: ['tiny', "),
  "unknown field": ([DEFAULT, "--config.nonexistent=1"], "--config.nonexistent: the config has no field 'nonexistent'"),
  "unknown nested field": (
    [DEFAULT, "--config.stages.stage3.epochs=1"],
    "--config.stages.stage3.epochs: the config has no field 'stage3' (did you mean 'stage2'?)",
  ),
  "misspelled field": (
    [DEFAULT, "--config.n_seed=2"],
    "--config.n_seed: the config has no field 'n_seed' (did you mean 'n_seeds'?)",
  ),
  "misspelled nested leaf": (
    [DEFAULT, "--config.model.d_modle=2"],
    "--config.model.d_modle: the config has no field 'd_modle' (did you mean 'd_model'?)",
  ),
  "value of the wrong type": ([DEFAULT, "--config.n_seeds=abc"], "flag --config.n_seeds=abc: invalid literal for int"),
  "unknown flag": ([DEFAULT, "--epochs=3"], "Unknown command line flag 'epochs'"),
}


@pytest.fixture(scope="module")
def config_files(tmp_path_factory):
  folder = tmp_path_factory.mktemp("configs")
  (folder / "bad_syntax.py").write_text("def get_config(:\n")
  (folder / "bad_name.py").write_text("def get_config():\n  return undefined_name\n")
  return {"bad_syntax": str(folder / "bad_syntax.py"), "bad_name": str(folder / "bad_name.py")}


def _one_line_error(module, args, tmp_path):
  workdir = tmp_path / "w"
  result = subprocess.run(
    [sys.executable, "-m", module, *args, f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True
  )
  assert result.returncode == 2, result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert not os.path.exists(workdir)
  return result.stderr.strip()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_command_line_mistake_is_one_line(case, config_files, tmp_path):
  args, message = CASES[case]
  args = [a.format(**config_files) for a in args]
  line = _one_line_error("iml_jax.main", args, tmp_path)
  assert line.startswith("iml_jax: error: ") and message.format(**config_files) in line, line


def test_the_sweep_parses_its_flags_the_same_way(tmp_path):
  line = _one_line_error("iml_jax.sweep", [DEFAULT, "--config.stages.stage3.epochs=1", "--sweep=seed=0,1"], tmp_path)
  assert line.startswith("iml_jax.sweep: error: --config.stages.stage3.epochs: the config has no field 'stage3'")
