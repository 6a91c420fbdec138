r"""Rewrites the report of a workdir from its saved evaluations:

  python -m iml_jax.report --workdir=DIR

DIR is a run's workdir (run_report.py: results.csv, summary.json, plots, report.md, as at the end of the run) or a
sweep directory (`python -m iml_jax.sweep`; sweep_report.py: all runs in one tidy table, a summary per setting,
sweep curves).
"""

from iml_jax import cli, run_report, specs, sweep_report
from iml_jax import workdir as workdir_layout
from iml_jax.errors import IMLError


def report_workdir(workdir: str) -> dict:
  """The report of a run's workdir or of a sweep directory, whichever `workdir` holds."""
  if workdir_layout.holds_sweep(workdir):
    return sweep_report.write_sweep_report(workdir)
  try:
    config = workdir_layout.load_config(workdir)
  except (OSError, IMLError) as err:
    raise IMLError(f"{workdir} holds neither a sweep (sweep.json) nor a run (readable config.json: {err})") from None
  return run_report.write_report(specs.Experiment.from_config(config), workdir)


def main(workdir: str) -> None:
  from absl import logging

  logging.set_verbosity(logging.WARNING)
  try:
    report_workdir(workdir)
  except IMLError as err:
    cli.fail("iml_jax.report", err)


if __name__ == "__main__":  # flags only here: the library is imported next to main.py's own --workdir
  from absl import app, flags

  _WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir or a sweep directory.")
  flags.mark_flags_as_required(["workdir"])
  app.run(lambda argv: main(_WORKDIR.value), flags_parser=cli.flags_parser("iml_jax.report"))
