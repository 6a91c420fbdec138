"""The report of a run: results.csv (one tidy row per evaluation), summary.json, plots, report.md; written at the
end of every run and by `python -m iml_jax.report`.

The statistics are in stats.py, the figures in plots.py, the workdir's layout in workdir.py.
"""

import csv
import io
import os

import jax

from iml_jax.data.tasks import score_of
from iml_jax.errors import IMLError
from iml_jax.io_utils import atomic_write_json, atomic_write_text
from iml_jax.plots import curve_frame, plot_subsets
from iml_jax.stats import format_table, summarize, summarize_alignment
from iml_jax.workdir import collect_rows, result_columns


def write_report(experiment, workdir: str, require_complete: bool = False, print_table: bool = True) -> dict:
  """Writes the report of `experiment` (specs.Experiment) and prints its table (unless `print_table` is off: an
  analysis prints its own); with `require_complete` (the end of a run) a final record missing from a finished stage
  is an error, before anything is written: a summary over fewer runs than planned is never the run's result."""
  rows = collect_rows(experiment, workdir)
  summary = summarize(experiment, rows)
  if require_complete and summary.get("missing"):
    missing = summary["missing"]
    raise IMLError(
      f"finished stages lack {len(missing)} final evaluation records ({', '.join(missing[:3])}"
      f"{', ...' if len(missing) > 3 else ''}) in their eval.jsonl; delete those stage directories "
      "and rerun the same command to recompute them"
    )
  alignment = summarize_alignment(experiment, workdir)
  if alignment:
    summary["grad_alignment"] = alignment
  if jax.process_index() == 0:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=result_columns(experiment.task), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(os.path.join(workdir, "results.csv"), table.getvalue())
    atomic_write_json(os.path.join(workdir, "summary.json"), summary)
    score = score_of(experiment.task)
    plot = os.path.join("plots", f"{score.name}_per_subset.png")
    paper_plot = os.path.join("plots", f"{score.name}_per_subset_pooled.png")
    if rows:
      plot_subsets(curve_frame(experiment), rows, os.path.join(workdir, plot))
      plot_subsets(curve_frame(experiment), rows, os.path.join(workdir, paper_plot), pooled=True)
    atomic_write_text(
      os.path.join(workdir, "report.md"),
      "\n".join(
        ["# Run report", "", "```", format_table(summary), "```", ""]
        + (
          [
            f"![{score.label} per subset]({plot})",
            "",
            f"As the paper plots it: ![{score.label} per subset, runs pooled]({paper_plot})",
            "",
          ]
          if rows
          else []
        )
      ),
    )
    if print_table:
      print(format_table(summary))
  return summary
