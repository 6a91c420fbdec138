"""Aggregation of a sweep: one tidy table over all runs, a summary per setting, sweep curves, report.md.

A *setting* is one combination of the swept values other than `seed`; the runs of a setting are pooled, so
seeds swept as runs count as stage-1 seeds exactly like `n_seeds` within one run.
"""

import csv
import io
import os
import re

import jax

from iml_jax import io_utils, plots, specs, stats
from iml_jax import workdir as workdir_layout
from iml_jax.data.tasks import score_of
from iml_jax.errors import IMLError
from iml_jax.metrics import EXACT_MATCH
from iml_jax.io_utils import atomic_write_json, atomic_write_text

POOLED_FIELDS = ("seed",)


def collect(workdir: str) -> tuple[dict, list[dict], dict]:
  """(plan, tidy rows of every started run with its swept values, {run: its specs.Experiment})."""
  plan = workdir_layout.load_plan(workdir)
  rows, experiments = [], {}
  for name in plan["runs"]:
    run_dir = os.path.join(workdir, name)
    if not io_utils.exists(os.path.join(run_dir, workdir_layout.CONFIG_FILE)):
      continue  # not started yet
    experiment = specs.Experiment.from_config(workdir_layout.load_config(run_dir))
    experiments[name] = experiment
    values = plan["runs"][name]
    rows.extend({"run": name, **values, **row} for row in workdir_layout.collect_rows(experiment, run_dir))
  return plan, rows, experiments


def settings(plan: dict) -> list[str]:
  return [field for field, _ in plan["axes"] if field not in POOLED_FIELDS]


def summarize_settings(plan: dict, rows: list[dict], experiments: dict) -> list[dict]:
  """One entry per setting: its values, runs, and `stats.summarize` over the pooled rows."""
  fields = settings(plan)
  groups: dict = {}
  for name, experiment in experiments.items():
    values = plan["runs"][name]
    key = tuple(values[f] for f in fields)
    groups.setdefault(key, {"values": dict(zip(fields, key)), "runs": [], "experiment": experiment})["runs"].append(
      name
    )
  out = []
  for key, group in groups.items():
    pooled = [r for r in rows if r["run"] in group["runs"]]
    out.append(
      {"values": group["values"], "runs": group["runs"], "summary": stats.summarize(group["experiment"], pooled)}
    )
  return out


def _label(values: dict) -> str:
  return ", ".join(f"{k}={v}" for k, v in values.items()) or "all runs"


def setting_plot_name(score_name: str, values: dict) -> str:
  """A setting's figure, named by its values: em_stages.stage1.batch_size=32.png, em_all_runs.png."""
  label = "__".join(f"{k}={v}" for k, v in values.items()) or "all_runs"
  return f"{score_name}_{re.sub(r'[^A-Za-z0-9._=-]+', '-', label)}.png"


def _as_number(text: str) -> float | None:
  try:
    return float(text)
  except ValueError:
    return None


def plot_gap_curves(plan: dict, summaries: list[dict], out_dir: str) -> list[str]:
  """IML gap (mean, 95% CI over stage-1 seeds) against each numeric swept field, one line per setting of
  the others. Returns the written paths."""
  paths = []
  fields = settings(plan)
  for field in fields:
    others = [f for f in fields if f != field]
    lines: dict = {}
    for entry in summaries:
      gap, x = entry["summary"].get("iml_gap"), _as_number(entry["values"][field])
      if gap is None or x is None:
        continue
      definition = gap["definition"]
      lines.setdefault(tuple(entry["values"][f] for f in others), []).append((x, gap["mean"], gap["ci95"] or 0.0))
    if not any(len(points) > 1 for points in lines.values()):
      continue
    figure, axis = plots.plt.subplots(figsize=(6, 4))
    for key, points in sorted(lines.items()):
      points.sort()
      axis.errorbar(
        [p[0] for p in points],
        [p[1] for p in points],
        yerr=[p[2] for p in points],
        marker="o",
        capsize=3,
        label=_label(dict(zip(others, key))),
      )
    axis.axhline(0.0, color="black", linewidth=0.8)
    xs = sorted({p[0] for points in lines.values() for p in points})
    if xs[0] > 0 and xs[-1] / xs[0] >= 8:
      axis.set_xscale("log", base=2)
    axis.set_xticks(xs, [f"{x:g}" for x in xs])
    axis.minorticks_off()
    axis.set_xlabel(field)
    axis.set_ylabel(f"IML gap {definition}")
    axis.set_title("IML gap, mean and 95% CI over stage-1 seeds", fontsize=9)
    if others:
      axis.legend(fontsize=7)
    figure.tight_layout()
    path = os.path.join(out_dir, f"gap_vs_{field}.png")
    plots.save_figure(figure, path)
    paths.append(path)
  return paths


def alignment_plot(plan: dict, workdir: str) -> list[str]:
  """The study's cosine-vs-batch figure when the sweep is over one `*.batch_size` field alone (seeds within
  each run) and every run measured gradient alignment."""
  fields = [field for field, _ in plan["axes"]]
  if len(fields) != 1 or not fields[0].endswith(".batch_size"):
    return []
  run_dirs = [os.path.join(workdir, name) for name in plan["runs"]]
  for run_dir in run_dirs:
    try:
      if not io_utils.read_json(os.path.join(run_dir, "summary.json")).get("grad_alignment"):
        return []
    except (OSError, IMLError):
      return []
  path = os.path.join(workdir, "plots", "alignment_vs_batch.png")
  plots.plot_alignment_vs_batch(run_dirs, path)
  return [path]


def markdown(plan: dict, summaries: list[dict], figures: list[str], workdir: str, score) -> str:
  subsets = sorted(
    {s for entry in summaries for s in entry["summary"]["subsets"]},
    key=lambda s: (s not in ("d1consis", "d2consis"), s),
  )
  better, worse = ("d1consis", "d2consis") if score.higher_is_better else ("d2consis", "d1consis")
  lines = [
    f"# Sweep report: {plan['config']}",
    "",
    "Axes: " + "; ".join(f"`{f}` = {', '.join(v)}" for f, v in plan["axes"]),
    "",
    f"{score.label} after the last stage, mean ± 95% CI over stage-1 seeds (runs differing only in "
    f"{', '.join(POOLED_FIELDS)} pooled). Gap = {score.label}({better}) − {score.label}({worse}), "
    "one-sided paired t-test.",
    "",
    "| setting | seeds | " + " | ".join(subsets) + " | gap | p |",
    "|---|---|" + "---|" * len(subsets) + "---|---|",
  ]

  def cell(value, ci):
    return "—" if value is None else f"{value:.3f}" + ("" if ci is None else f" ± {ci:.3f}")

  for entry in summaries:
    summary = entry["summary"]
    gap = summary.get("iml_gap") or {}
    seeds = len(next(iter(summary["subsets"].values()))[f"{score.name}_per_seed"]) if summary["subsets"] else 0
    values = [
      cell(summary["subsets"][s][score.name], summary["subsets"][s]["ci95"]) if s in summary["subsets"] else "—"
      for s in subsets
    ]
    p = gap.get("p_value")
    lines.append(
      f"| {_label(entry['values'])} | {seeds} | "
      + " | ".join(values)
      + f" | {cell(gap.get('mean'), gap.get('ci95'))} | {'—' if p is None else f'{p:.2g}'} |"
    )
  lines.append("")
  for entry in summaries:
    if entry["summary"].get("study"):
      lines += [
        f"Setting {_label(entry['values'])}:",
        "",
        "```",
        stats.format_deviations(entry["summary"]["study"]),
        "```",
        "",
      ]
  for path in figures:
    lines += [f"![{os.path.basename(path)}]({os.path.relpath(path, workdir)})", ""]
  return "\n".join(lines)


def write_sweep_report(workdir: str) -> dict:
  """results.csv (tidy, every run), summary.json (per setting), plots/, report.md; the summary."""
  plan, rows, experiments = collect(workdir)
  summaries = summarize_settings(plan, rows, experiments)
  result = {
    "config": plan["config"],
    "axes": plan["axes"],
    "settings": [{k: v for k, v in entry.items()} for entry in summaries],
  }
  if jax.process_index() != 0:
    return result
  columns = (
    workdir_layout.result_columns(next(iter(experiments.values())).task) if experiments else workdir_layout.KEY_COLUMNS
  )
  fields = [field for field, _ in plan["axes"] if field not in columns]  # a swept seed: one column
  table = io.StringIO()
  writer = csv.DictWriter(table, fieldnames=["run", *fields, *columns], lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  atomic_write_text(os.path.join(workdir, "results.csv"), table.getvalue())
  atomic_write_json(os.path.join(workdir, "summary.json"), result)
  score = score_of(next(iter(experiments.values())).task) if experiments else EXACT_MATCH
  figures = []
  for index, entry in enumerate(summaries):
    pooled = [r for r in rows if r["run"] in entry["runs"]]
    if pooled:
      path = os.path.join(workdir, "plots", setting_plot_name(score.name, entry["values"]))
      if path in figures:  # values that differ only in characters a file name cannot hold
        path = path.replace(".png", f"-{index}.png")
      plots.plot_subsets(plots.curve_frame(experiments[entry["runs"][0]]), pooled, path, title=_label(entry["values"]))
      figures.append(path)
  figures = plot_gap_curves(plan, summaries, os.path.join(workdir, "plots")) + alignment_plot(plan, workdir) + figures
  atomic_write_text(os.path.join(workdir, "report.md"), markdown(plan, summaries, figures, workdir, score))
  print(f"sweep report: {os.path.join(workdir, 'report.md')}")
  return result
