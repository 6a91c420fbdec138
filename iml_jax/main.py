r"""Runs an experiment config: python -m iml_jax.main --config=configs/default.py --workdir=DIR

Override any field with --config.a.b=value (e.g. --config.n_seeds=2). Rerunning the same command
on the same workdir resumes it. Bad input ends with one line naming the field or file, exit status 2.
SIGTERM (preemption) saves a checkpoint at the next step and exits with status 143; under --distributed, SIGTERM
to any process stops every process at the same step, within about a second.
"""

if __name__ == "__main__":  # before the libraries below load: a SIGTERM meanwhile ends the run with 143 too
  from iml_jax import preemption

  preemption.install_sigterm_handler()

import os  # noqa: E402
import sys  # noqa: E402

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from iml_jax import cli, compilation_cache  # noqa: E402
from iml_jax.errors import IMLError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (configs/*.py[:args]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  bool(os.environ.get("IML_JAX_DISTRIBUTED")),
  "Call jax.distributed.initialize(): on Cloud TPU VMs it finds the other hosts itself; elsewhere set "
  "JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID on every process.",
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  "allow_config_change",
  False,
  "Continue a workdir whose saved config differs in result-changing fields (listed); finished stages are kept.",
)
_PRINT_CONFIG = flags.DEFINE_bool(
  "print_config",
  False,
  "Print the resolved config (file, argument and overrides) and exit without running; --workdir is not needed.",
)
flags.mark_flags_as_required(["config"])
flags.adopt_module_key_flags(compilation_cache)  # --compilation_cache in --help


def cluster_from_environment(environ) -> dict:
  """jax.distributed.initialize arguments for a cluster JAX cannot detect (CPU hosts, the launch simulator):
  JAX itself reads JAX_COORDINATOR_ADDRESS; the process count and index come from these two variables."""
  names = {"num_processes": "JAX_NUM_PROCESSES", "process_id": "JAX_PROCESS_ID"}
  given = {arg: environ[name] for arg, name in names.items() if name in environ}
  if given and len(given) < len(names):
    raise ValueError(f"set both {' and '.join(names.values())}, or neither (got only {', '.join(given)})")
  try:
    return {arg: int(value) for arg, value in given.items()}
  except ValueError:
    raise ValueError(f"{' and '.join(names.values())} must be integers (got {given})") from None


def main(argv):
  del argv
  if _PRINT_CONFIG.value:
    print(_CONFIG.value, end="")
    return
  if not _WORKDIR.value:
    cli.fail("iml_jax", "flag --workdir must name the run's directory")
  logging.set_verbosity(logging.WARNING)  # orbax logs every file operation at INFO
  import jax  # after absl parsed the flags, so XLA_FLAGS set by a launcher are in place

  from iml_jax import experiment, preemption

  if _DISTRIBUTED.value:
    try:
      cluster = cluster_from_environment(os.environ)
    except ValueError as err:
      cli.fail("iml_jax", f"--distributed: {err}")
    jax.distributed.initialize(**cluster)  # JAX's SIGTERM handler replaces ours: see iml_jax/preemption.py
  try:
    compilation_cache.enable_from_flag()
    experiment.run(_CONFIG.value, _WORKDIR.value, _ALLOW_CONFIG_CHANGE.value)
  except IMLError as err:
    cli.fail("iml_jax", err)
  except OSError as err:  # e.g. a full disk or a vanished directory while writing results
    cli.fail("iml_jax", f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
  except preemption.Preempted as stopped:
    print(f"iml_jax: {stopped}", file=sys.stderr)
    sys.exit(preemption.PREEMPTED_EXIT_STATUS)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser("iml_jax"))
