"""Statistics over seeds and the summary they form (summary.json), with its printed table.

The unit of independence is the stage-1 seed (docs/study.md §8.4): values are first averaged over
stage-2 seeds, then means, t-intervals and the one-sided paired test run over stage-1 seeds.
The paper's own statistics are reported beside them (`summary.pooled`): every run (stage-1 × stage-2 seed)
pooled as an independent sample, mean ± sample std, 95% bootstrap intervals of the mean per epoch (seaborn's
default error bar), and a one-sided Student t-test from those statistics.
"""

import math

import numpy as np
from scipy import stats as scipy_stats

from iml_jax import study_settings
from iml_jax.data.tasks import score_of
from iml_jax.workdir import plan_stage_runs, read_alignment_records


def mean_ci95(values) -> tuple[float, float | None]:
  """Mean and the half-width of the 95% t-interval (None for a single value)."""
  values = np.asarray(values, dtype=np.float64)
  if len(values) < 2:
    return float(values.mean()), None
  half = scipy_stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
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


def summarize(experiment, rows: list[dict]) -> dict:
  """The last stage's final epoch per subset (mean, 95% CI, per seed of the task's score) and the IML gap,
  signed so that a positive gap is IML: EM(d1consis) - EM(d2consis), or MSE(d2consis) - MSE(d1consis).
  Values are paired by seed, never by position; `missing` lists the planned runs without a final record of a
  subset (a run still going, or damage)."""
  score = score_of(experiment.task)
  last = experiment.stage_names[-1]
  stage_rows = [r for r in rows if r["stage"] == last]
  if not stage_rows:
    return {"stage": last, "metric": score.name, "subsets": {}, "iml_gap": None, "study": study_summary(experiment)}
  final_epoch = max(r["global_epoch"] for r in stage_rows)
  final_rows = [r for r in stage_rows if r["global_epoch"] == final_epoch]
  values = {field: per_seed(final_rows, field) for field in score.fields}
  subsets = {}
  for (_, _, subset), seeds in sorted(values[score.name].items()):
    mean, ci = mean_ci95(list(seeds.values()))
    subsets[subset] = {
      score.name: mean,
      "ci95": ci,
      **{
        f: float(np.mean(list(values[f][(last, final_epoch, subset)].values())))
        for f in score.fields
        if f != score.name
      },
      f"{score.name}_per_seed": [seeds[s] for s in sorted(seeds)],
      "seeds": sorted(seeds),
    }
  summary = {
    "stage": last,
    "metric": score.name,
    "epoch": final_epoch,
    "n_seeds": len({r["seed"] for r in final_rows}),
    "n_seeds_stage2": experiment.n_seeds_stage2,
    "subsets": subsets,
    "iml_gap": None,
    "missing": missing_runs(
      [
        (seed, run.seed_stage2, run.label)
        for seed in range(experiment.seed, experiment.seed + experiment.n_seeds)
        for run in plan_stage_runs(experiment, "", seed)
        if run.name == last
      ],
      stage_rows,
      final_epoch,
    ),
  }
  summary["pooled"] = summarize_pooled(score, final_rows, last, final_epoch)
  summary["study"] = study_summary(experiment)
  if "d1consis" in subsets and "d2consis" in subsets:
    better, worse = (values[score.name][(last, final_epoch, s)] for s in _iml_direction(score))
    seeds = sorted(set(better) & set(worse))
    a, b = np.array([better[s] for s in seeds]), np.array([worse[s] for s in seeds])
    mean, ci = mean_ci95(a - b)
    p_value = float(scipy_stats.ttest_rel(a, b, alternative="greater").pvalue) if len(a) > 1 else None
    summary["iml_gap"] = {
      "definition": "{0}({1}) - {0}({2})".format(score.label, *_iml_direction(score)),
      "mean": mean,
      "ci95": ci,
      "p_value": None if p_value is None or math.isnan(p_value) else p_value,
      "test": "one-sided paired t-test over stage-1 seeds",
      "per_seed": (a - b).tolist(),
      "seeds": seeds,
    }
  return summary


def missing_runs(planned: list[tuple[int, int, str]], stage_rows: list[dict], final_epoch: int) -> list[str]:
  """'<stage run>: <subset>' for every planned run of the stage — (seed, stage-2 seed, label) — without a
  `final_epoch` record of a subset that the stage evaluates (has a record of at any epoch of any run)."""
  found = {(r["seed"], r["seed_stage2"], r["subset"]) for r in stage_rows if r["global_epoch"] == final_epoch}
  subsets = sorted({r["subset"] for r in stage_rows})
  return [
    f"{label}: {subset}"
    for seed, seed_stage2, label in planned
    for subset in subsets
    if (seed, seed_stage2, subset) not in found
  ]


def study_summary(experiment) -> dict:
  """Which study experiment the run is measured against and what it does differently (iml_jax/study_settings.py)."""
  return {
    "experiment": experiment.study_experiment,
    "deviations": list(experiment.deviations),
    "project_choices": experiment.project_choices,
  }


def summarize_pooled(score, final_rows: list[dict], stage: str, epoch: int) -> dict:
  """The paper's statistics (docs/study.md §8.4) at the final epoch: every run pooled; per subset mean, sample std
  (ddof 1), n and the bootstrap 95% CI of the mean; the one-sided Student t-test of the IML direction."""
  values = {subset: v for (s, e, subset), v in pooled_runs(final_rows, score.name).items() if (s, e) == (stage, epoch)}
  out = {
    "subsets": {
      subset: {
        "mean": float(np.mean(v)),
        "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
        "n": len(v),
        "ci95_bootstrap": bootstrap_ci95(v),
      }
      for subset, v in sorted(values.items())
    },
    "ttest": None,
  }
  better, worse = _iml_direction(score)
  a, b = out["subsets"].get(better), out["subsets"].get(worse)
  if a and b and a["n"] > 1 and b["n"] > 1:
    p_value = float(
      scipy_stats.ttest_ind_from_stats(
        a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"], equal_var=True, alternative="greater"
      ).pvalue
    )
    out["ttest"] = {
      "definition": f"{score.label}({better}) > {score.label}({worse}), runs pooled",
      "p_value": None if math.isnan(p_value) else p_value,
      "test": "one-sided Student t-test (pooled variance) from mean, std, n",
    }
  return out


def summarize_alignment(experiment, workdir: str) -> dict:
  """Per stage, at its last measured epoch: each set's mean definition–question cosine and distance (mean and
  95% CI over stage-1 seeds), the variance, and the paired one-sided test cos(tag A) > cos(tag B)."""
  labels = experiment.analysis.grad_alignment.sets.split(",")[2:]
  by_stage: dict = {}
  for seed in range(experiment.seed, experiment.seed + experiment.n_seeds):
    for run in plan_stage_runs(experiment, workdir, seed):
      records = read_alignment_records(run.directory)
      if not records:
        continue
      last = max(r["epoch"] for r in records)
      for r in records:
        if r["epoch"] == last:
          values = (
            {"variance": r["variance"], "mean_cos_to_mean": r["mean_cos_to_mean"]}
            if r["set"] == "all"
            else {"cos": float(np.mean(r["cos"])), "dist": float(np.mean(r["dist"]))}
          )
          for name, value in values.items():
            by_stage.setdefault(run.name, {"epoch": last, "values": {}})["values"].setdefault(
              (r["set"], name), {}
            ).setdefault(seed, []).append(value)
  summary = {}
  for stage_name, found in by_stage.items():
    per_seed_means = {key: {s: float(np.mean(v)) for s, v in seeds.items()} for key, seeds in found["values"].items()}
    out = {"epoch": found["epoch"]}
    for (label, name), seeds in sorted(per_seed_means.items()):
      mean, ci = mean_ci95([seeds[s] for s in sorted(seeds)])
      out.setdefault(label, {})[name] = {"mean": mean, "ci95": ci}
    a, b = (per_seed_means.get((label, "cos")) for label in labels)
    if a and b:
      diff = np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])  # paired by seed
      p_value = float(scipy_stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue) if len(diff) > 1 else None
      mean, ci = mean_ci95(diff)
      out["cos_gap"] = {
        "definition": f"cos({labels[0]}) - cos({labels[1]})",
        "mean": mean,
        "ci95": ci,
        "p_value": None if p_value is None or math.isnan(p_value) else p_value,
      }
    summary[stage_name] = out
  return summary


def format_alignment(alignment: dict) -> str:
  """summarize_alignment's result as printed: per stage, a verdict line on the paired test of the definition–question
  cosines, then each set's mean cosine and distance (mean ± 95% CI over stage-1 seeds)."""

  def shown(value: dict) -> str:
    return f"{value['mean']:+.4f}" + (f" ± {value['ci95']:.4f}" if value["ci95"] is not None else "")

  lines = []
  for stage_name, found in alignment.items():
    gap = found.get("cos_gap")
    if gap is None:
      verdict = "one set of the pair was not measured: no comparison"
    elif gap["p_value"] is None:
      verdict = f"{gap['definition']} = {shown(gap)} (one stage-1 seed: no test)"
    else:
      better = (
        "tag A's definitions align better with their questions" if gap["p_value"] < 0.05 else "no difference shown"
      )
      verdict = f"{gap['definition']} = {shown(gap)}, one-sided p = {gap['p_value']:.2g}: {better}"
    lines.append(f"{stage_name} (epoch {found['epoch']}): {verdict}")
    for label, values in found.items():
      if isinstance(values, dict) and "cos" in values:
        lines.append(f"  {label:28s} cos {shown(values['cos'])}   distance {shown(values['dist'])}")
  return "\n".join(lines)


def format_alignment_vs_batch(points) -> str:
  """plots.alignment_by_batch's points as printed: a verdict on how tag A's cosine advantage changes from the
  smallest batch to the largest, then one line per batch size."""

  def shown(value: dict | None) -> str:
    if value is None:
      return "not tested"
    ci = f" ± {value['ci95']:.4f}" if value.get("ci95") is not None else ""
    p_value = f", p = {value['p_value']:.2g}" if value.get("p_value") is not None else ""
    return f"{value['mean']:+.4f}{ci}{p_value}"

  first, last = points[0], points[-1]
  if len(points) < 2 or first.cos_gap is None or last.cos_gap is None:
    verdict = "one batch size or an untested gap: no trend to judge"
  else:
    falls = first.cos_gap["mean"] > last.cos_gap["mean"]
    verdict = (
      f"tag A's advantage {'falls' if falls else 'does not fall'} from batch {first.batch_size} to {last.batch_size}"
    )
  lines = [f"alignment vs batch size: {verdict}"]
  for point in points:
    a, b = (f"{c['mean']:+.4f}" for c in point.cos)
    lines.append(
      f"  batch {point.batch_size:>6}  cos {point.labels[0]} {a}, {point.labels[1]} {b}, gap {shown(point.cos_gap)}"
    )
  return "\n".join(lines)


def format_table(summary: dict) -> str:
  """The printed result: each subset by its code and paper name with n (stage-1 seeds), the IML gap with its paired
  test, and the paper's pooled test, each p-value labelled by the test it comes from."""
  metric = summary.get("metric", "em")
  lines = [f"Results after stage {summary['stage']} ({metric.upper()}, mean ± 95% CI over stage-1 seeds)"]
  missing = summary.get("missing")
  if missing:
    lines.append(
      f"  PARTIAL: {len(missing)} final records missing ({', '.join(missing[:3])}"
      f"{', ...' if len(missing) > 3 else ''}); the values below are over the runs that have them"
    )
  for subset, values in summary["subsets"].items():
    ci = "" if values["ci95"] is None else f" ± {values['ci95']:.3f}"
    n = len(values.get(f"{metric}_per_seed", []))
    lines.append(
      f"  {subset:<26} {study_settings.PAPER_SUBSET_NAMES.get(subset, ''):<21} {values[metric]:.3f}{ci:<8}  n = {n}"
    )
  gap = summary.get("iml_gap")
  if gap:
    ci = "" if gap["ci95"] is None else f" ± {gap['ci95']:.3f}"
    p = (
      ""
      if gap["p_value"] is None
      else (f", one-sided p = {gap['p_value']:.2g} (paired t-test over the {len(gap['per_seed'])} stage-1 seeds)")
    )
    lines.append(f"  IML gap {gap['definition']}  {gap['mean']:+.3f}{ci}{p}")
  test = (summary.get("pooled") or {}).get("ttest")
  if test and test["p_value"] is not None:
    n = summary["pooled"]["subsets"]["d1consis"]["n"]
    lines.append(
      f"  as the paper (all {n} runs pooled, Student t-test): one-sided p = {test['p_value']:.2g} "
      "(treats every run as independent and ignores the pairing by seed, so it is usually smaller)"
    )
  if summary.get("study"):
    lines.append(format_deviations(summary["study"]))
  return "\n".join(lines)


def format_deviations(study_summary: dict) -> str:
  """The study experiment and the deviations from it, as printed under a result."""
  deviations = study_summary["deviations"]
  if study_summary["experiment"] == study_settings.NO_STUDY_ROW:  # e.g. a run made before configs named their row
    return f"Study experiment: {study_settings.NO_STUDY_ROW} (its config names no `study` row), deviations not checked"
  lines = [
    f"Study experiment: {study_summary['experiment']}",
    f"Deviations from the study: {len(deviations) or 'none'}",
  ]
  choices = study_summary.get("project_choices")  # absent from a summary written before they were listed
  return "\n".join(
    lines
    + [f"  - {d}" for d in deviations]
    + ([f"Project choices (the study does not say): {choices}"] if choices else [])
  )
