r"""Will it fit? Compiles every program a run of a config executes for TPU slices, on any machine (no TPU needed):
python -m iml_jax.tpu_plan --config=configs/pythia_cvdb_2stage.py --tpu=v5litepod-8

Needs libtpu (`pip install -e ".[tpu]"`). Each `--tpu` type (the accelerator names launch/create.sh takes, comma-
separated; default: v4-8, v5litepod-8, v5p-8, v6e-8) gets the config's own mesh and sharding rules over its devices
and the real TPU compiler's figures per chip: memory of each program against the chip's HBM; the train step's bytes
accessed and collectives, and its FLOPs (the program's own, counted before partitioning, over the devices); the
roofline bound on its time (the larger of FLOPs / peak and bytes / bandwidth, the chips' published figures in
`tpu_types.py`), the FLOP-utilisation ceiling it implies and the whole run's
chip-hours at that bound. All of it is a compile-time estimate, not a measurement. The last line per type:
RESULT tpu_plan config=<as given> tpu=<type> fits=<yes|no> gib_per_chip=<float> step_tflop=<float> step_gb=<float>
step_seconds_bound=<float> run_chip_hours_bound=<float>
"""

import os
import sys

# Compiling needs no device: JAX's eager work stays on the CPU (an attached TPU is left to the jobs using it), and
# no persistent compilation cache (an executable compiled without its devices cannot be loaded back from it).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"

from absl import app, flags  # noqa: E402  (after JAX_PLATFORMS: absl loads the config, which may import jax)
from ml_collections import config_flags  # noqa: E402

from iml_jax import cli
from iml_jax.compiled_plan import PROGRAM_KINDS
from iml_jax.errors import IMLError
from iml_jax.tpu_types import DEFAULT_TYPES

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:args]).")
_TPU = flags.DEFINE_list("tpu", list(DEFAULT_TYPES), "TPU types to plan for, e.g. v5litepod-8,v4-8.")
_PROGRAMS = flags.DEFINE_multi_enum(
  "programs", list(PROGRAM_KINDS), PROGRAM_KINDS, "Which of the run's programs to compile (repeat the flag)."
)
_DUMP_HLO = flags.DEFINE_string("dump_hlo", "", "A directory to write each compiled program's optimised HLO to.")
_BREAKDOWN = flags.DEFINE_integer(
  "breakdown", 0, "Also print the largest train step's N largest sources of bytes accessed (its HLO by JAX op)."
)
flags.mark_flags_as_required(["config"])


def _config_spec(argv: list[str]) -> str:
  return next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))


def main(argv):
  del argv
  from iml_jax import compile_plan, compiled_plan, tpu_types

  spec = _config_spec(sys.argv)
  try:
    kinds = [tpu_types.tpu_type(name) for name in _TPU.value]
    tpu_types.topology_devices(kinds[0])  # libtpu present: one line if not, before the host work
    run = compile_plan.run_shape(_CONFIG.value)
    print(f"tpu_plan {spec}: {compiled_plan.described(run)}; mesh.rules {run.mesh.rules!r}")
    for note in run.notes:
      print(f"  note: {note}")
    plans = []
    for kind in kinds:
      plans.append(compiled_plan.plan_for(run, kind, _PROGRAMS.value, _DUMP_HLO.value))
      print("\n".join(compiled_plan.describe(plans[-1], spec, _BREAKDOWN.value)), flush=True)
  except IMLError as err:
    cli.fail("tpu_plan", err)
  if any(not p.fits() for p in plans):
    print(compiled_plan.what_fits(plans, run.mesh))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.flags_parser("tpu_plan"))
