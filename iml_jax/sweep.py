r"""Sweeps as absl batch jobs: the product of config values, each run in its own sub-workdir.

  python -m iml_jax.sweep --config=configs/default.py --workdir=DIR --sweep=seed=0,1,2 \
      --sweep=stages.stage2.batch_size=32,128 --config.n_seeds=1 [--config.field=value ...] [--print_commands]

Runs one after another in this process (rerunning resumes unfinished runs and skips finished ones), or, with
--print_commands, prints one `python -m iml_jax.main` command per unfinished run for a scheduler or a pod.
Sub-workdirs are named after their values (DIR/seed=0,stages.stage2.batch_size=32). A list value that holds
commas is written as a Python list: --sweep='mesh.shape=[(1,1,2),(2,1,1)]'. At the end (or with
`python -m iml_jax.report --workdir=DIR`) the runs are aggregated: runs that differ only in `seed` are pooled
as stage-1 seeds of one setting.
"""

import ast
import copy
import dataclasses
import functools
import itertools
import os
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from iml_jax import cli
from iml_jax.errors import IMLError


@dataclasses.dataclass(frozen=True)
class SweepRun:
  name: str  # sub-workdir
  values: dict  # field -> value
  texts: dict  # field -> the value as given


def parse_axis(spec: str) -> tuple[str, list[str]]:
  """`field=v1,v2` (or `field=[v1, v2]` for values with commas) -> (field, value texts)."""
  field, sep, values = spec.partition("=")
  if not sep or not field or not values:
    raise IMLError(f"--sweep={spec}: expected FIELD=V1,V2,...")
  if values.startswith("["):
    try:
      parsed = ast.literal_eval(values)
    except (ValueError, SyntaxError):
      raise IMLError(f"--sweep={spec}: {values} is not a Python list of values") from None
    texts = [repr(v) if not isinstance(v, str) else v for v in parsed]
  else:
    texts = values.split(",")
  if len(set(texts)) != len(texts) or not all(texts):
    raise IMLError(f"--sweep={spec}: values must be non-empty and distinct")
  return field, texts


def cast_value(config, field: str, text: str):
  """`text` as the type the base config gives `field` (the names the field in an error)."""
  node = config
  parts = field.split(".")
  for part in parts[:-1]:
    if part not in node or not hasattr(node[part], "keys"):
      raise IMLError(f"--sweep field {field}: the config has no field {part!r} there")
    node = node[part]
  if parts[-1] not in node:
    raise IMLError(f"--sweep field {field}: the config has no such field")
  current = node[parts[-1]]
  try:
    if isinstance(current, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError
      return text.lower() in ("true", "1")
    if isinstance(current, int):
      return int(text)
    if isinstance(current, float):
      return float(text)
    if isinstance(current, str):
      return text
    value = ast.literal_eval(text)
    return tuple(value) if isinstance(current, tuple) else value
  except (ValueError, SyntaxError):
    raise IMLError(f"--sweep field {field}: {text!r} is not a {type(current).__name__}") from None


def plan(config, specs: list[str]) -> tuple[list[tuple[str, list[str]]], list[SweepRun]]:
  """(axes, runs): the product of every axis's values, in the order the flags give them."""
  if not specs:
    raise IMLError("no --sweep=FIELD=V1,V2,... given")
  axes = [parse_axis(spec) for spec in specs]
  fields = [field for field, _ in axes]
  if len(set(fields)) != len(fields):
    raise IMLError(f"--sweep names a field twice: {fields}")
  runs = []
  for texts in itertools.product(*[values for _, values in axes]):
    values = {field: cast_value(config, field, text) for field, text in zip(fields, texts)}
    name = ",".join(f"{field}={text}" for field, text in zip(fields, texts))
    runs.append(SweepRun(name.replace(os.sep, "_").replace(" ", ""), values, dict(zip(fields, texts))))
  return axes, runs


def run_config(base, run: SweepRun):
  config = copy.deepcopy(base)
  config.unlock()
  for field, value in run.values.items():
    node = config
    *parents, leaf = field.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = value
  config.lock()
  return config


def config_argument(argv: list[str]) -> str:
  """The --config value as given (path and `:args`), for the commands a run is started with."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  raise IMLError("--config=configs/<x>.py is required")


def base_overrides(argv: list[str]) -> list[str]:
  """The `--config.field=value` flags the sweep was given: every run gets them."""
  return [arg for arg in argv if arg.startswith("--config.")]


def record_plan(workdir: str, config_arg: str, overrides: list[str], axes, runs) -> None:
  """Writes sweep.json, or refuses a sweep directory that holds another sweep (never mix two in one report)."""
  from iml_jax import io_utils
  from iml_jax.workdir import PLAN_FILE

  path = os.path.join(workdir, PLAN_FILE)
  described = {
    "config": config_arg,
    "overrides": overrides,
    "axes": [[f, v] for f, v in axes],
    "runs": {run.name: run.texts for run in runs},
  }
  if io_utils.exists(path):
    try:
      saved = io_utils.read_json(path)
    except IMLError as err:
      raise IMLError(f"{err}; move it away if {workdir} holds no sweep") from None
    differing = sorted(k for k in described if saved.get(k) != described[k])
    if differing:
      shown = "; ".join(f"{k}: {saved.get(k)!r} -> {described[k]!r}" for k in differing)
      raise IMLError(f"{workdir} holds another sweep ({shown}); use a new --workdir")
  io_utils.atomic_write_json(path, described)


def check_distinct_seeds(base, runs: list[SweepRun]) -> None:
  """Runs that differ only in `seed` are pooled as one setting's stage-1 seeds, and each trains `n_seeds` seeds
  from its own: their seeds must not overlap (seed=0,1 with n_seeds = 2 would train seed 1 twice)."""
  trained: dict = {}
  for run in runs:
    config = run_config(base, run)
    seeds = set(range(config.seed, config.seed + config.n_seeds))
    setting = tuple((field, text) for field, text in run.texts.items() if field != "seed")
    for other, other_seeds in trained.get(setting, []):
      if seeds & other_seeds:
        raise IMLError(
          f"--sweep over seed: runs {other} and {run.name} would both train stage-1 seed(s) "
          f"{sorted(seeds & other_seeds)} (each run trains n_seeds = {config.n_seeds} seeds from its "
          f"seed); add --config.n_seeds=1, or space the seeds n_seeds apart (seed=0,{config.n_seeds},...)"
        )
    trained.setdefault(setting, []).append((run.name, seeds))


def command_for(config_arg: str, run_dir: str, overrides: list[str], run: SweepRun) -> str:
  values = [
    f"--config.{field}={value!r}" if isinstance(value, tuple) else f"--config.{field}={value}"
    for field, value in run.values.items()
  ]
  words = [sys.executable, "-m", "iml_jax.main", f"--config={config_arg}", f"--workdir={run_dir}"]
  words += [*overrides, *values]
  return " ".join(shlex.quote(w) for w in words)


def run_sweep(
  base,
  workdir: str,
  specs: list[str],
  config_arg: str,
  overrides: list[str],
  print_commands: bool = False,
) -> dict | None:
  """Runs (or prints) every unfinished run, then aggregates; the aggregate summary (None when printing)."""
  import jax
  from tqdm import tqdm

  from iml_jax import experiment, io_utils, sweep_report
  from iml_jax.specs import Experiment
  from iml_jax.workdir import is_finished

  axes, runs = plan(base, specs)
  checked = {run.name: Experiment.from_config(run_config(base, run)) for run in runs}  # before the first starts
  check_distinct_seeds(base, runs)
  io_utils.check_supported(workdir)
  io_utils.makedirs(workdir)
  record_plan(workdir, config_arg, overrides, axes, runs)
  pending = [run for run in runs if not is_finished(checked[run.name], os.path.join(workdir, run.name))]
  if print_commands:
    for run in pending:
      print(command_for(config_arg, os.path.join(workdir, run.name), overrides, run))
    print(f"# then: python -m iml_jax.report --workdir={shlex.quote(workdir)}")
    return None
  if jax.process_index() == 0:
    print(f"sweep {workdir}: {len(runs)} runs, {len(runs) - len(pending)} finished, {len(pending)} to run")
  for run in tqdm(pending, desc="sweep", unit="run", disable=jax.process_index() != 0 or not base.progress_bar):
    experiment.run(run_config(base, run), os.path.join(workdir, run.name))
  return sweep_report.write_sweep_report(workdir)


def main(argv, flag_values) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  from iml_jax import compilation_cache, preemption

  try:
    if flag_values["print_config"].value:
      base = flag_values["config"].value
      print(base, end="")
      print("sweep runs (each: the config above with these values):")
      for run in plan(base, flag_values["sweep"].value)[1]:
        print(f"  {run.name}")
      return
    compilation_cache.enable_from_flag()
    run_sweep(
      flag_values["config"].value,
      flag_values["workdir"].value,
      flag_values["sweep"].value,
      config_argument(sys.argv),
      base_overrides(sys.argv),
      flag_values["print_commands"].value,
    )
  except IMLError as err:
    cli.fail("iml_jax.sweep", err)
  except preemption.Preempted as stopped:
    print(f"iml_jax.sweep: {stopped}", file=sys.stderr)
    sys.exit(preemption.PREEMPTED_EXIT_STATUS)


if __name__ == "__main__":  # flags only here: the library is imported next to main.py's own flags
  from iml_jax import compilation_cache, preemption

  preemption.install_sigterm_handler()  # first: a SIGTERM while flags, config and libraries load is honoured too
  config_flags.DEFINE_config_file(
    "config", None, "Base experiment config file (configs/*.py[:args]).", lock_config=False
  )
  flags.DEFINE_string("workdir", None, "Sweep directory: one sub-workdir per run, sweep.json, the report.")
  flags.DEFINE_multi_string(
    "sweep",
    None,
    "FIELD=V1,V2,...: a config field (e.g. seed, stages.stage1.batch_size) "
    "and its values; repeat the flag for a product of fields. Runs differing only in seed "
    "are pooled, so their seeds must not overlap: each trains n_seeds seeds from its seed "
    "(use --config.n_seeds=1, or seeds n_seeds apart); overlapping seeds are refused.",
  )
  flags.DEFINE_bool("print_config", False, "Print the resolved base config and the runs, and exit without running.")
  flags.DEFINE_bool(
    "print_commands", False, "Print one `python -m iml_jax.main` command per unfinished run instead of running them."
  )
  flags.mark_flags_as_required(["config", "workdir", "sweep"])
  flags.adopt_module_key_flags(compilation_cache)
  app.run(functools.partial(main, flag_values=flags.FLAGS), flags_parser=cli.flags_parser("iml_jax.sweep"))
