"""Every citation in code, configs, notebooks and docs points to a file and section that the repository holds, and
every command README.md and docs/*.md print works as printed.

The commands are those of the ```bash blocks and the inline `python -m iml_jax...` / `python benchmarks/...` /
`python tests/...` / `launch/...` spans. None is run at full size: `python -m iml_jax.main` (and the fault
launcher) with `--print_config` appended (config file, `:args` and every `--config.*` override resolved), the sweep
with `--print_config`, the other absl tools and benchmarks with `--only_check_args` (every flag parsed, config
files included), the launch scripts with `--dry_run` (and what they pass to main checked as above), pytest and pip
against pytest.ini and setup.py. README's first `main` command (the quick start) really runs, shrunk with `:tiny`,
and the commands that read its workdir (export, report, probes) run on what it wrote."""

import ast
import concurrent.futures
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


# ---- the commands the documentation prints ----

_BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
_INLINE = re.compile(r"`((?:python -m iml_jax\.|python benchmarks/|python tests/|launch/[a-z_]+\.sh)[^`]*)`")
# Programs the documentation names that this machine cannot or should not run (Google Cloud, the formatter, the
# mutation tester, TensorBoard, apt): their commands are left alone.
_EXTERNAL = ("gcloud", "ruff", "mutmut", "tensorboard", "apt", "apt-get", "git", "cd")
# tools whose commands read a run's workdir and are run for real on the quick start's shrunk run
_RUN_ON_THE_QUICK_START = {"iml_jax.export_hf": (), "iml_jax.report": (), "iml_jax.analyze": ("--analysis=probes",)}


def _documents():
  docs = os.path.join(ROOT, "docs")
  return ["README.md", *(f"docs/{name}" for name in sorted(os.listdir(docs)) if name.endswith(".md"))]


class Command:
  def __init__(self, doc: str, env: dict, argv: list, text: str):
    self.doc, self.env, self.argv, self.text = doc, env, argv, text

  def __repr__(self):
    return f"{self.doc}: {self.text}"


def _split(doc: str, line: str, exported: dict) -> list:
  """The commands of one shell line: `&&`/`;`-separated, leading VAR=value assignments as their environment,
  `export` updating the block's environment, `$VAR` expanded where the block or this process defines it."""
  commands, words = [], []
  for word in [*shlex.split(line, comments=True), "&&"]:
    if word not in ("&&", ";", "||"):
      words.append(word)
      continue
    env = dict(exported)
    if words and words[0] == "export":
      exported.update(w.split("=", 1) for w in words[1:] if "=" in w)
    else:
      while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
      words = [w for w in words if w not in ("...", "…")]  # "python -m iml_jax.main ...": the rest left open
      if words and not any(w.endswith(("...", "…")) for w in words):  # not `python -m iml_jax...`, a family
        expand = {**os.environ, **env}
        argv = [re.sub(r"\$(\w+)", lambda m: expand.get(m.group(1), m.group(0)), w) for w in words]
        commands.append(Command(doc, env, argv, " ".join(words)))
    words = []
  return commands


def documented_commands(documents=None) -> list:
  """Every command of README.md and docs/*.md, in order."""
  commands = []
  for doc in documents or _documents():
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    for language, body in _BLOCK.findall(text):
      if language in ("bash", "sh", "shell"):
        exported = {}
        for line in body.replace("\\\n", " ").splitlines():
          commands += _split(doc, line, exported)
    for span in _INLINE.findall(_BLOCK.sub("", text)):
      commands += _split(doc, span, {})
  return commands


def python_blocks(documents=None) -> list:
  blocks = []
  for doc in documents or _documents():
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    blocks += [(doc, body) for language, body in _BLOCK.findall(text) if language == "python"]
  return blocks


def _module_and_args(argv):
  """('iml_jax.main', args) for `python -m iml_jax.main args`, ('benchmarks/x.py', args) for a script."""
  if argv[0] not in ("python", "python3") or len(argv) < 2:
    return None, argv[1:]
  if argv[1] == "-m":
    return argv[2], argv[3:]
  return argv[1], argv[2:]


def _pytest_problems(args) -> list:
  ini = open(os.path.join(ROOT, "pytest.ini"), encoding="utf-8").read()
  markers = set(re.findall(r"^\s+(\w+):", ini, re.M))
  problems, args = [], list(args)
  while args:
    arg = args.pop(0)
    if arg in ("-m", "-k", "-n", "--durations"):
      value = args.pop(0)
      if arg == "-m":
        problems += [f"marker {w!r} is not in pytest.ini" for w in re.findall(r"\w+", value) if w not in markers]
      if arg == "-n" and not value.isdigit():
        problems.append(f"-n {value}")
    elif arg.startswith("-"):
      if arg not in ("-q", "-x", "-v", "-s", "--lf", "--co"):
        problems.append(f"option {arg} unknown to this test")
    elif not os.path.exists(os.path.join(ROOT, arg.split("::")[0])):
      problems.append(f"{arg} does not exist")
  return problems


def _pip_problems(args) -> list:
  setup = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
  extras = set(re.findall(r'^  "(\w+)": ', setup[setup.index("EXTRAS_REQUIRE") :], re.M))
  problems = []
  for arg in args:
    named = re.fullmatch(r"\.(?:\[([\w,]+)\])?", arg)
    if named and named.group(1):
      problems += [f"setup.py has no extra {e!r}" for e in named.group(1).split(",") if e not in extras]
  return problems if args[:1] == ["install"] else [*problems, "only `pip install` is expected"]


def _named_tool_problems(argv) -> list:
  if argv[0] in ("python", "python3"):
    return [] if importlib.util.find_spec(argv[2]) else [f"no module {argv[2]}"]
  return [] if os.path.exists(os.path.join(ROOT, argv[0])) else [f"{argv[0]} does not exist"]


def _replace(argv, old, new):
  return [word.replace(old, new) for word in argv]


def _plan(command, quick_start_workdir, tiny_workdir):
  """(argv to run, environment) checking `command`, or a list of problems found without running anything."""
  argv = command.argv
  if argv[0] in _EXTERNAL:
    return []
  if argv[0] == "pip":
    return _pip_problems(argv[1:])
  if argv[0] == "bash":
    script = os.path.join(ROOT, argv[1])
    return [] if os.path.exists(script) else [f"{argv[1]} does not exist"]
  if len(argv) == 1 or argv[:2] == ["python", "-m"] and len(argv) == 3:
    return _named_tool_problems(argv)  # a tool named in prose, not a command to run
  if argv[0].startswith("launch/"):
    cut = argv.index("--") if "--" in argv else len(argv)
    return [[*argv[:cut], "--dry_run", *argv[cut:]]]
  module, args = _module_and_args(argv)
  if module is None:
    return [f"no rule in tests/test_docs.py checks {argv[0]!r} commands"]
  if module == "pytest":
    return _pytest_problems(args)
  if module.endswith(".py") and not os.path.exists(os.path.join(ROOT, module)):
    return [f"{module} does not exist"]
  if quick_start_workdir and _reads_the_workdir(module, args, quick_start_workdir):
    return [_replace(argv, quick_start_workdir, tiny_workdir)]
  if module in ("iml_jax.main", "tests/injected_main.py", "iml_jax.sweep"):
    return [[*argv, "--print_config"]]
  if module.startswith("iml_jax.") or module.startswith("benchmarks/"):
    return [[*argv, "--only_check_args"]]
  return [f"no rule in tests/test_docs.py checks {module!r}"]


def _run(argv, env, timeout=300):
  argv = [sys.executable, *argv[1:]] if argv[0] in ("python", "python3") else argv
  done = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)
  return None if done.returncode == 0 else f"exit status {done.returncode}: {(done.stderr or done.stdout)[-1500:]}"


def _launch_passes_to_main(command) -> list:
  """What launch/run.sh and relaunch.sh hand to `python -m iml_jax.main` on the workers, as a local argv."""
  argv = command.argv
  if argv[0] not in ("launch/run.sh", "launch/relaunch.sh") or len(argv) == 1:
    return []
  cut = argv.index("--") if "--" in argv else len(argv)
  config = [a for a in argv[:cut] if a.startswith("--config=")]
  return [["python", "-m", "iml_jax.main", *config, *argv[cut + 1 :], "--print_config"]]


# A benchmark imports torch and transformers before it parses its flags: its documented commands are parsed in one
# process per script, each exactly as `--only_check_args` parses it (the script's flags, then absl's parse).
_PARSE_EACH = r"""
import json, os, runpy, sys
from absl import flags
script, argvs = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="flags_only")
errors = []
for argv in argvs:
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS([script, *argv])
    errors.append(None)
  except flags.Error as err:
    errors.append(f"{type(err).__name__}: {err}")
print(json.dumps(errors))
"""


def _parse_each(script, env, argvs) -> list:
  """`python script argv --only_check_args` for each argv, in one process: an error or None per argv."""
  done = subprocess.run(
    [sys.executable, "-c", _PARSE_EACH, script, json.dumps(argvs)],
    cwd=ROOT,
    env={**os.environ, **env},
    capture_output=True,
    text=True,
    timeout=300,
  )
  if done.returncode != 0:
    return [f"exit status {done.returncode}: {done.stderr[-1500:]}"] * len(argvs)
  return json.loads(done.stdout.splitlines()[-1])


def _check(commands, quick_start_workdir=None, tiny_workdir=None) -> list:
  """Problems of `commands`, the subprocesses two at a time."""
  problems, jobs = [], []
  for command in commands:
    for step in _plan(command, quick_start_workdir, tiny_workdir) + _launch_passes_to_main(command):
      if isinstance(step, str):
        problems.append(f"{command!r}: {step}")
      else:
        jobs.append((command, step))
  unique = {(tuple(step), tuple(sorted(command.env.items()))): command for command, step in jobs}
  batches, single = {}, []
  for argv, env in unique:
    if argv[1].startswith("benchmarks/") and argv[-1] == "--only_check_args":
      batches.setdefault((argv[1], env), []).append(argv)
    else:
      single.append((argv, env))

  def run_batch(key):
    (script, env), argvs = key, batches[key]
    errors = _parse_each(script, dict(env), [list(argv[2:-1]) for argv in argvs])
    return [(unique[argv, env], argv, error) for argv, error in zip(argvs, errors)]

  def run_single(key):
    return [(unique[key], key[0], _run(list(key[0]), dict(key[1])))]

  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    futures = [pool.submit(run_batch, key) for key in batches] + [pool.submit(run_single, key) for key in single]
    results = [result for future in futures for result in future.result()]
  problems += [f"{command!r}\n  checked as: {' '.join(argv)}\n  {error}" for command, argv, error in results if error]
  return problems


def _quick_start(commands):
  """README's first `python -m iml_jax.main` command and the workdir it names."""
  for command in commands:
    module, args = _module_and_args(command.argv)
    if command.doc == "README.md" and module == "iml_jax.main":
      (workdir,) = [a.split("=", 1)[1] for a in args if a.startswith("--workdir=")]
      return command, workdir
  raise AssertionError("README.md prints no `python -m iml_jax.main` command")


def test_the_documentation_prints_commands_of_each_kind():
  """The extraction itself: it finds the commands the README must have."""
  readme = [" ".join(c.argv) for c in documented_commands(["README.md"])]
  assert "python -m pytest -q -n 2 tests" in readme
  assert "python -m pytest -q -n 2 -m slow tests" in readme
  assert "pip install -e .[test] -c constraints.txt --extra-index-url https://download.pytorch.org/whl/cpu" in readme
  for prefix in ("python -m iml_jax.main", "python -m iml_jax.sweep", "python -m iml_jax.tpu_plan", "launch/run.sh"):
    assert any(c.startswith(prefix) for c in readme), prefix
  assert all("--host_malloc" not in c for c in readme)
  for doc in _documents():  # a line opening with backticks that is no fence would pair the fences wrongly
    fences = re.findall(r"^```", open(os.path.join(ROOT, doc), encoding="utf-8").read(), re.M)
    assert len(fences) % 2 == 0, doc
  assert "--host_malloc" not in open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_every_documented_command_parses_as_printed():
  commands = documented_commands()
  quick_start, _ = _quick_start(commands)
  problems = _check(c for c in commands if c is not quick_start and not _reads_quick_start_workdir(c, commands))
  assert not problems, "\n".join(problems)


def _reads_the_workdir(module, args, workdir) -> bool:
  """Whether `module args` is run for real on the quick start's workdir."""
  needed = _RUN_ON_THE_QUICK_START.get(module)
  return needed is not None and all(a in args for a in needed) and any(workdir in a for a in args)


def _reads_quick_start_workdir(command, commands):
  _, workdir = _quick_start(commands)
  return _reads_the_workdir(*_module_and_args(command.argv), workdir)


def test_the_quick_start_runs_and_the_commands_on_its_workdir_work(tmp_path):
  """README's main command, shrunk with `:tiny`, runs; then export, report and probes as printed, on its workdir."""
  commands = documented_commands()
  quick_start, workdir = _quick_start(commands)
  tiny_workdir = str(tmp_path / os.path.basename(workdir.rstrip("/")))
  argv = [a + ":tiny" if a.startswith("--config=") and ":" not in a else a for a in quick_start.argv]
  argv = _replace(argv, workdir, tiny_workdir)
  assert any(a.endswith(":tiny") for a in argv), quick_start
  error = _run([*argv, "--config.progress_bar=False"], quick_start.env)
  assert error is None, f"{quick_start!r}\n  run as: {' '.join(argv)}\n  {error}"
  readers = [c for c in commands if _reads_quick_start_workdir(c, commands)]
  assert readers, "README prints no command that reads the quick start's workdir"
  problems = _check(readers, workdir, tiny_workdir)
  assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc, code", python_blocks())
def test_python_blocks_compile_and_name_what_exists(doc, code):
  """A ```python block compiles, its imports import and every attribute it takes of an imported module exists."""
  tree = ast.parse(code, filename=doc)
  modules = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      for alias in node.names:
        imported = importlib.import_module(node.module)
        if not hasattr(imported, alias.name):  # a submodule
          imported = importlib.import_module(f"{node.module}.{alias.name}")
        else:
          imported = getattr(imported, alias.name)
        modules[alias.asname or alias.name] = imported
    elif isinstance(node, ast.Import):
      for alias in node.names:
        modules[alias.asname or alias.name] = importlib.import_module(alias.name)
  for node in ast.walk(tree):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
      assert hasattr(modules[node.value.id], node.attr), f"{doc}: {node.value.id}.{node.attr}"
