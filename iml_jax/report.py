r"""Aggregation over seeds: results.csv, summary.json (means, 95% CIs, the IML gap test), plots, report.md.

  python -m iml_jax.report --workdir=DIR
      Rewrites the report of a run's workdir (also written at the end of every run), or of a sweep directory
      (`python -m iml_jax.sweep`): all runs in one tidy table, a summary per setting, sweep curves.

The unit of independence is the stage-1 seed (docs/study.md §8.4): values are first averaged over
stage-2 seeds, then means, t-intervals and the one-sided paired test run over stage-1 seeds.
The paper's own statistics are reported beside them (`summary.pooled`, `*_per_subset_pooled.png`): every run
(stage-1 × stage-2 seed) pooled as an independent sample, mean ± sample std, 95% bootstrap intervals of the
mean per epoch (seaborn's default error bar), and a one-sided Student t-test from those statistics.
"""
import csv
import io
import math
import os
import sys

import jax
import matplotlib
import ml_collections
import numpy as np
from scipy import stats

from iml_jax import faults, io_utils, study
from iml_jax.data.tasks import score_of
from iml_jax.errors import IMLError
from iml_jax.io_utils import atomic_write_json, atomic_write_text
from iml_jax.stage import plan_stage_runs, read_alignment_records, read_eval_records

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the headless backend)

# Paper notation and colours (docs/study.md §3.2, §8.4), in legend order.
PLOT_SUBSETS = {
    "q_no_replacement_baseline": ("QA4 (not replaced)", "tab:green"),
    "qd1consis": ("D1cons QA1", "tab:purple"),
    "q": ("QA3", "tab:brown"),
    "qd2incons": ("D2incons QA2", "tab:pink"),
    "d1consis": ("D5cons (tag 1)", "tab:blue"),
    "d3consis": ("D8cons (new tag)", "tab:gray"),
    "d2consis": ("D6cons (tag 2)", "tab:red"),
    "no_qd_baseline": ("QA7 (unseen aliases)", "tab:orange"),
    "qd1incons": ("D8incons QA8", "tab:olive"),  # the α variant (docs/study.md §3.2, §4.5)
    "qd2consis": ("D9cons QA9", "tab:cyan"),
}
OTHER_COLOURS = ("black", "gold", "magenta", "teal", "navy", "lime")  # none of the paper's
KEY_COLUMNS = ("seed", "seed_stage2", "stage", "epoch", "global_epoch", "subset")


def result_columns(config) -> tuple[str, ...]:
  return KEY_COLUMNS + score_of(config).fields


def collect_rows(config, workdir: str) -> list[dict]:
  fields = score_of(config).fields
  offsets, total = {}, 0
  for name in config.stage_names:
    offsets[name] = total
    total += config.stages[name].epochs
  rows = []
  for seed in range(config.seed, config.seed + config.n_seeds):
    for run in plan_stage_runs(config, workdir, seed):
      for record in read_eval_records(run.directory):
        rows.append({"seed": seed, "seed_stage2": run.seed_stage2, "stage": run.name, "epoch": record["epoch"],
                     "global_epoch": offsets[run.name] + record["epoch"], "subset": record["subset"],
                     **{f: record[f] for f in fields}})
  return rows


def mean_ci95(values) -> tuple[float, float | None]:
  """Mean and the half-width of the 95% t-interval (None for a single value)."""
  values = np.asarray(values, dtype=np.float64)
  if len(values) < 2:
    return float(values.mean()), None
  half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
  return float(values.mean()), float(half)


def bootstrap_ci95(values, n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
  """The 95% percentile interval of the mean over `n_resamples` resamples with replacement (fixed seed)."""
  values = np.asarray(values, dtype=np.float64)
  means = values[np.random.default_rng(seed).integers(len(values), size=(n_resamples, len(values)))].mean(1)
  low, high = np.percentile(means, [2.5, 97.5])
  return float(low), float(high)


def pooled_runs(rows: list[dict], metric: str) -> dict:
  """{(stage, epoch, subset): [the value of every run (stage-1 × stage-2 seed)]}, as the paper pools them."""
  grouped: dict = {}
  for r in rows:
    grouped.setdefault((r["stage"], r["global_epoch"], r["subset"]), []).append(r[metric])
  return grouped


def _iml_direction(score) -> tuple[str, str]:
  """(the subset IML favours, the other) under the task's score."""
  return ("d1consis", "d2consis") if score.higher_is_better else ("d2consis", "d1consis")


def per_seed(rows: list[dict], metric: str) -> dict:
  """{(stage, epoch, subset): {seed: mean over stage-2 seeds}}."""
  grouped: dict = {}
  for r in rows:
    grouped.setdefault((r["stage"], r["global_epoch"], r["subset"]), {}).setdefault(r["seed"], []).append(r[metric])
  return {k: {s: float(np.mean(v)) for s, v in seeds.items()} for k, seeds in grouped.items()}


def summarize(config, rows: list[dict]) -> dict:
  """The last stage's final epoch per subset (mean, 95% CI, per seed of the task's score) and the IML gap,
  signed so that a positive gap is IML: EM(d1consis) - EM(d2consis), or MSE(d2consis) - MSE(d1consis)."""
  score = score_of(config)
  last = config.stage_names[-1]
  final_rows = [r for r in rows if r["stage"] == last]
  if not final_rows:
    return {"stage": last, "metric": score.name, "subsets": {}, "iml_gap": None, "study": study_summary(config)}
  final_epoch = max(r["global_epoch"] for r in final_rows)
  values = {field: per_seed(final_rows, field) for field in score.fields}
  subsets = {}
  for (_, epoch, subset), seeds in sorted(values[score.name].items()):
    if epoch != final_epoch:
      continue
    mean, ci = mean_ci95(list(seeds.values()))
    subsets[subset] = {score.name: mean, "ci95": ci,
                       **{f: float(np.mean(list(values[f][(last, epoch, subset)].values())))
                          for f in score.fields if f != score.name},
                       f"{score.name}_per_seed": [seeds[s] for s in sorted(seeds)]}
  summary = {"stage": last, "metric": score.name, "epoch": final_epoch,
             "n_seeds": len({r["seed"] for r in final_rows}), "n_seeds_stage2": config.n_seeds_stage2,
             "subsets": subsets, "iml_gap": None}
  summary["pooled"] = summarize_pooled(score, final_rows, last, final_epoch)
  summary["study"] = study_summary(config)
  if "d1consis" in subsets and "d2consis" in subsets:
    better, worse = _iml_direction(score)
    a = np.array(subsets[better][f"{score.name}_per_seed"])
    b = np.array(subsets[worse][f"{score.name}_per_seed"])
    mean, ci = mean_ci95(a - b)
    p_value = float(stats.ttest_rel(a, b, alternative="greater").pvalue) if len(a) > 1 else None
    summary["iml_gap"] = {"definition": f"{score.label}({better}) - {score.label}({worse})", "mean": mean,
                          "ci95": ci, "p_value": None if p_value is None or math.isnan(p_value) else p_value,
                          "test": "one-sided paired t-test over stage-1 seeds", "per_seed": (a - b).tolist()}
  return summary


def study_summary(config) -> dict:
  """Which study experiment the run is measured against and what it does differently (iml_jax/study.py)."""
  return {"experiment": study.describe(config), "deviations": study.deviations(config)}


def summarize_pooled(score, final_rows: list[dict], stage: str, epoch: int) -> dict:
  """The paper's statistics (docs/study.md §8.4) at the final epoch: every run pooled; per subset mean, sample std
  (ddof 1), n and the bootstrap 95% CI of the mean; the one-sided Student t-test of the IML direction."""
  values = {subset: v for (s, e, subset), v in pooled_runs(final_rows, score.name).items() if (s, e) == (stage, epoch)}
  out = {"subsets": {subset: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                              "n": len(v), "ci95_bootstrap": bootstrap_ci95(v)}
                     for subset, v in sorted(values.items())}, "ttest": None}
  better, worse = _iml_direction(score)
  a, b = out["subsets"].get(better), out["subsets"].get(worse)
  if a and b and a["n"] > 1 and b["n"] > 1:
    p_value = float(stats.ttest_ind_from_stats(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"],
                                               equal_var=True, alternative="greater").pvalue)
    out["ttest"] = {"definition": f"{score.label}({better}) > {score.label}({worse}), runs pooled",
                    "p_value": None if math.isnan(p_value) else p_value,
                    "test": "one-sided Student t-test (pooled variance) from mean, std, n"}
  return out


def summarize_alignment(config, workdir: str) -> dict:
  """Per stage, at its last measured epoch: each set's mean definition–question cosine and distance (mean and
  95% CI over stage-1 seeds), the variance, and the paired one-sided test cos(tag A) > cos(tag B)."""
  labels = config.analysis.grad_alignment.sets.split(",")[2:]
  by_stage: dict = {}
  for seed in range(config.seed, config.seed + config.n_seeds):
    for run in plan_stage_runs(config, workdir, seed):
      records = read_alignment_records(run.directory)
      if not records:
        continue
      last = max(r["epoch"] for r in records)
      for r in records:
        if r["epoch"] == last:
          values = ({"variance": r["variance"], "mean_cos_to_mean": r["mean_cos_to_mean"]} if r["set"] == "all"
                    else {"cos": float(np.mean(r["cos"])), "dist": float(np.mean(r["dist"]))})
          for name, value in values.items():
            by_stage.setdefault(run.name, {"epoch": last, "values": {}})["values"].setdefault(
                (r["set"], name), {}).setdefault(seed, []).append(value)
  summary = {}
  for stage_name, found in by_stage.items():
    per_seed_means = {key: {s: float(np.mean(v)) for s, v in seeds.items()} for key, seeds in found["values"].items()}
    out = {"epoch": found["epoch"]}
    for (label, name), seeds in sorted(per_seed_means.items()):
      mean, ci = mean_ci95([seeds[s] for s in sorted(seeds)])
      out.setdefault(label, {})[name] = {"mean": mean, "ci95": ci}
    a, b = (per_seed_means.get((label, "cos")) for label in labels)
    if a and b:
      diff = np.array([a[s] - b[s] for s in sorted(a)])
      p_value = float(stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue) if len(diff) > 1 else None
      mean, ci = mean_ci95(diff)
      out["cos_gap"] = {"definition": f"cos({labels[0]}) - cos({labels[1]})", "mean": mean, "ci95": ci,
                        "p_value": None if p_value is None or math.isnan(p_value) else p_value}
    summary[stage_name] = out
  return summary


def _save_figure(figure, path: str) -> None:
  """Writes the figure atomically (a reader never sees half a PNG) and frees it."""
  png = io.BytesIO()
  figure.savefig(png, format="png", dpi=120)
  plt.close(figure)
  io_utils.atomic_write_bytes(path, png.getvalue())


def plot_subsets(config, rows: list[dict], path: str, title: str = "", pooled: bool = False) -> None:
  """The task's score per subset over the epochs of all stages: mean and 95% t-interval over stage-1 seeds,
  or (`pooled`, the paper's figure) mean and 95% bootstrap interval over all runs."""
  score = score_of(config)
  by_epoch = ({key: dict(enumerate(v)) for key, v in pooled_runs(rows, score.name).items()} if pooled
        else per_seed(rows, score.name))
  n_seeds = len({r["seed"] for r in rows})
  n_runs = len({(r["seed"], r["seed_stage2"]) for r in rows})
  interval = bootstrap_ci95 if pooled else (lambda v: _t_band(*mean_ci95(v)))
  figure, axis = plt.subplots(figsize=(8, 4.5))
  # The paper's subsets in its notation and colours, then any other evaluated set under its own name.
  others = sorted({name for (_, _, name) in by_epoch} - set(PLOT_SUBSETS))
  for subset, (label, colour) in list(PLOT_SUBSETS.items()) + [
      (name, (name, OTHER_COLOURS[i % len(OTHER_COLOURS)])) for i, name in enumerate(others)]:
    points = sorted((epoch, float(np.mean(list(seeds.values()))), interval(list(seeds.values())))
                    for (_, epoch, name), seeds in by_epoch.items() if name == subset)
    if not points:
      continue
    epochs = [p[0] for p in points]
    axis.plot(epochs, [p[1] for p in points], marker="o", markersize=3, color=colour, label=label)
    axis.fill_between(epochs, np.clip([p[2][0] for p in points], 0, score.upper_bound),
                      np.clip([p[2][1] for p in points], 0, score.upper_bound), color=colour, alpha=0.2)
  boundary = 0
  for name in config.stage_names[:-1]:
    boundary += config.stages[name].epochs
    axis.axvline(boundary, color="black", linestyle=":", linewidth=1)
  axis.set_xlabel("epoch (all stages)")
  axis.set_ylabel({"em": "exact match", "mse": "mean squared error"}.get(score.name, score.name))
  over = (f"95% bootstrap CI over {n_runs} pooled runs (as the paper)" if pooled
          else f"95% CI over {n_seeds} stage-1 seed(s)")
  axis.set_title(f"{title + ': ' if title else ''}{score.label} per subset, mean and {over}", fontsize=9)
  axis.legend(fontsize=8, loc="best")
  figure.tight_layout()
  _save_figure(figure, path)


def _t_band(mean: float, half: float | None) -> tuple[float, float]:
  return mean - (half or 0.0), mean + (half or 0.0)


def plot_alignment_vs_batch(workdirs: list[str], path: str) -> None:
  """The study's §11.3 figure: definition–question cosine (tag A vs tag B, mean and 95% CI over seeds) at
  each run's batch size, from each workdir's summary.json (the first stage's last measurement)."""
  points = []
  for workdir in workdirs:
    try:
      config = ml_collections.ConfigDict(io_utils.read_json(os.path.join(workdir, "config.json")))
      summary = io_utils.read_json(os.path.join(workdir, "summary.json"))
    except (OSError, IMLError) as err:
      raise IMLError(f"{workdir}: no readable config.json and summary.json ({err})") from None
    stage_name = config.stage_names[0]
    alignment = summary.get("grad_alignment", {}).get(stage_name)
    if not alignment:
      raise IMLError(f"{workdir}/summary.json has no gradient alignment for stage {stage_name}; run "
                     "python -m iml_jax.analyze --analysis=grad_alignment on it first")
    labels = config.analysis.grad_alignment.sets.split(",")[2:]
    points.append((config.stages[stage_name].batch_size, [alignment[label]["cos"] for label in labels], labels))
  points.sort(key=lambda p: p[0])
  figure, axis = plt.subplots(figsize=(6, 4))
  for index, colour in ((0, "tab:blue"), (1, "tab:red")):
    label = points[0][2][index]
    axis.errorbar([p[0] for p in points], [p[1][index]["mean"] for p in points],
                  yerr=[p[1][index]["ci95"] or 0.0 for p in points], marker="o", capsize=3, color=colour,
                  label=f"{label} (tag {'AB'[index]})")
  axis.set_xscale("log", base=2)
  axis.set_xlabel("batch size")
  axis.set_ylabel("cos(definition gradient, its QA gradients)")
  axis.legend()
  figure.tight_layout()
  _save_figure(figure, path)


def plot_probe_accuracy(accuracy_TxL: np.ndarray, positions: list[str], classes: list[str], path: str) -> None:
  """The study's probe heat-map: cross-validated accuracy per (token position × layer)."""
  figure, axis = plt.subplots(figsize=(1 + 0.5 * accuracy_TxL.shape[1], 1 + 0.35 * len(positions)))
  image = axis.imshow(accuracy_TxL, vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
  axis.set_yticks(range(len(positions)), positions, fontsize=7)
  axis.set_xticks(range(accuracy_TxL.shape[1]), [str(i + 1) for i in range(accuracy_TxL.shape[1])])
  axis.set_xlabel("layer")
  axis.set_title(f"probe accuracy: {classes[0]} vs {classes[1]}", fontsize=9)
  figure.colorbar(image, ax=axis)
  figure.tight_layout()
  _save_figure(figure, path)


def format_table(summary: dict) -> str:
  metric = summary.get("metric", "em")
  lines = [f"Results after stage {summary['stage']} ({metric.upper()}, mean ± 95% CI over stage-1 seeds)"]
  for subset, values in summary["subsets"].items():
    ci = "" if values["ci95"] is None else f" ± {values['ci95']:.3f}"
    lines.append(f"  {subset:<28} {values[metric]:.3f}{ci}")
  gap = summary.get("iml_gap")
  if gap:
    ci = "" if gap["ci95"] is None else f" ± {gap['ci95']:.3f}"
    p = "" if gap["p_value"] is None else f", one-sided p = {gap['p_value']:.2g}"
    lines.append(f"  IML gap {gap['definition']}  {gap['mean']:+.3f}{ci}{p}")
  test = (summary.get("pooled") or {}).get("ttest")
  if test and test["p_value"] is not None:
    n = summary["pooled"]["subsets"]["d1consis"]["n"]
    lines.append(f"  as the paper (all {n} runs pooled, Student t-test): one-sided p = {test['p_value']:.2g}")
  if summary.get("study"):
    lines.append(format_deviations(summary["study"]))
  return "\n".join(lines)


def format_deviations(study_summary: dict) -> str:
  """The study experiment and the deviations from it, as printed under a result."""
  deviations = study_summary["deviations"]
  if study_summary["experiment"] == study.NO_STUDY_ROW:  # e.g. a run made before configs named their row
    return f"Study experiment: {study.NO_STUDY_ROW} (its config names no `study` row), deviations not checked"
  lines = [f"Study experiment: {study_summary['experiment']}",
           f"Deviations from the study: {len(deviations) or 'none'}"]
  return "\n".join(lines + [f"  - {d}" for d in deviations])


def write_report(config, workdir: str) -> dict:
  rows = collect_rows(config, workdir)
  summary = summarize(config, rows)
  alignment = summarize_alignment(config, workdir)
  if alignment:
    summary["grad_alignment"] = alignment
  if jax.process_index() == 0:
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=result_columns(config), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(os.path.join(workdir, "results.csv"), table.getvalue())
    faults.reached("report")
    atomic_write_json(os.path.join(workdir, "summary.json"), summary)
    score = score_of(config)
    plot = os.path.join("plots", f"{score.name}_per_subset.png")
    paper_plot = os.path.join("plots", f"{score.name}_per_subset_pooled.png")
    if rows:
      plot_subsets(config, rows, os.path.join(workdir, plot))
      plot_subsets(config, rows, os.path.join(workdir, paper_plot), pooled=True)
    atomic_write_text(os.path.join(workdir, "report.md"), "\n".join(
        ["# Run report", "", "```", format_table(summary), "```", ""] +
        ([f"![{score.label} per subset]({plot})", "", f"As the paper plots it: ![{score.label} per subset, runs "
          f"pooled]({paper_plot})", ""] if rows else [])))
    print(format_table(summary))
  return summary


def report_workdir(workdir: str) -> dict:
  """The report of a run's workdir or of a sweep directory, whichever `workdir` holds."""
  from iml_jax import sweep_report
  from iml_jax.sweep import PLAN_FILE
  if io_utils.exists(os.path.join(workdir, PLAN_FILE)):
    return sweep_report.write_sweep_report(workdir)
  path = os.path.join(workdir, "config.json")
  try:
    config = ml_collections.ConfigDict(io_utils.read_json(path))
  except (OSError, IMLError) as err:
    raise IMLError(f"{workdir} holds neither a sweep (sweep.json) nor a run (readable config.json: {err})") from None
  return write_report(config, workdir)


def main(workdir: str) -> None:
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  try:
    report_workdir(workdir)
  except IMLError as err:
    sys.exit(f"iml_jax.report: error: {err}")


if __name__ == "__main__":  # flags only here: the library is imported next to main.py's own --workdir
  from absl import app, flags
  _WORKDIR = flags.DEFINE_string("workdir", None, "A run's workdir or a sweep directory.")
  flags.mark_flags_as_required(["workdir"])
  app.run(lambda argv: main(_WORKDIR.value))
