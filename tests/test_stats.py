import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from iml_jax import config_blocks as blocks
from iml_jax import plots, stats
from iml_jax.specs import Experiment


def _config(n_seeds=3, n_seeds_stage2=2):
  stages = dict(stage1=blocks.stage("stage1", 4, 8), stage2=blocks.stage("stage2", 2, 8))
  return blocks.base(
    "numeric", blocks.numeric_data(), blocks.gpt_neox(), stages, n_seeds=n_seeds, n_seeds_stage2=n_seeds_stage2
  )


def _rows():
  # Final (stage2, epoch 2) EM per (seed, seed_stage2); the summary must average stage-2 seeds first.
  d1 = {(0, 0): 0.8, (0, 1): 0.6, (1, 0): 0.7, (1, 1): 0.7, (2, 0): 0.9, (2, 1): 0.5}
  d2 = {(0, 0): 0.5, (0, 1): 0.5, (1, 0): 0.6, (1, 1): 0.6, (2, 0): 0.65, (2, 1): 0.55}
  rows = []
  for (seed, s2), value in d1.items():
    rows.append(
      dict(seed=seed, seed_stage2=s2, stage="stage2", epoch=2, global_epoch=6, subset="d1consis", em=value, f1=value)
    )
    rows.append(
      dict(
        seed=seed,
        seed_stage2=s2,
        stage="stage2",
        epoch=2,
        global_epoch=6,
        subset="d2consis",
        em=d2[seed, s2],
        f1=d2[seed, s2],
      )
    )
    rows.append(
      dict(seed=seed, seed_stage2=s2, stage="stage2", epoch=1, global_epoch=5, subset="d1consis", em=0.0, f1=0.0)
    )
  return rows


def test_summary_by_hand():
  summary = stats.summarize(Experiment.from_config(_config()), _rows())
  d1_per_seed, d2_per_seed = [0.7, 0.7, 0.7], [0.5, 0.6, 0.6]
  assert summary["epoch"] == 6
  assert summary["subsets"]["d1consis"]["em"] == pytest.approx(0.7)
  assert summary["subsets"]["d1consis"]["em_per_seed"] == pytest.approx(d1_per_seed)
  gaps = np.array([0.2, 0.1, 0.1])
  gap = summary["iml_gap"]
  assert gap["mean"] == pytest.approx(gaps.mean())
  half = scipy_stats.t.ppf(0.975, 2) * gaps.std(ddof=1) / math.sqrt(3)
  assert gap["ci95"] == pytest.approx(half)
  assert gap["p_value"] == pytest.approx(scipy_stats.ttest_rel(d1_per_seed, d2_per_seed, alternative="greater").pvalue)
  # Hand value of the one-sided paired t-test: t = mean / (sd / sqrt(n)), df = 2.
  t = gaps.mean() / (gaps.std(ddof=1) / math.sqrt(3))
  assert gap["p_value"] == pytest.approx(1 - scipy_stats.t.cdf(t, 2))


def test_paper_style_pooled_statistics_by_hand():
  """docs/study.md §8.4: every (seed, seed_stage2) run pooled; mean ± sample std; Student t-test from those."""
  pooled = stats.summarize(Experiment.from_config(_config()), _rows())["pooled"]
  d1_runs = [0.8, 0.6, 0.7, 0.7, 0.9, 0.5]
  d2_runs = [0.5, 0.5, 0.6, 0.6, 0.65, 0.55]
  assert pooled["subsets"]["d1consis"]["n"] == 6
  assert pooled["subsets"]["d1consis"]["mean"] == pytest.approx(0.7)
  assert pooled["subsets"]["d1consis"]["std"] == pytest.approx(np.std(d1_runs, ddof=1))
  expected = scipy_stats.ttest_ind(d1_runs, d2_runs, equal_var=True, alternative="greater").pvalue
  assert pooled["ttest"]["p_value"] == pytest.approx(expected)
  low, high = pooled["subsets"]["d1consis"]["ci95_bootstrap"]
  assert low < 0.7 < high
  assert "as the paper (all 6 runs pooled, Student t-test): one-sided p = " in stats.format_table(
    stats.summarize(Experiment.from_config(_config()), _rows())
  )


def test_bootstrap_interval_is_deterministic_and_close_to_the_t_interval_for_many_values():
  assert stats.bootstrap_ci95([0.3] * 5) == (0.3, 0.3)
  values = np.random.default_rng(1).normal(0.5, 0.1, size=400)
  low, high = stats.bootstrap_ci95(values)
  assert (low, high) == stats.bootstrap_ci95(values)
  mean, half = stats.mean_ci95(values)
  assert low < mean < high
  assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_single_seed_has_no_interval():
  mean, half = stats.mean_ci95([0.4])
  assert mean == 0.4 and half is None
  rows = [r for r in _rows() if r["seed"] == 0]
  summary = stats.summarize(Experiment.from_config(_config(n_seeds=1)), rows)
  assert summary["iml_gap"]["ci95"] is None and summary["iml_gap"]["p_value"] is None


def test_plot_and_table(tmp_path):
  config = _config()
  rows = _rows() + [
    dict(seed=s, seed_stage2=0, stage="stage1", epoch=4, global_epoch=4, subset="qd1consis", em=0.9, f1=0.9)
    for s in range(3)
  ]
  for pooled in (False, True):
    path = tmp_path / "plots" / f"em_{pooled}.png"
    plots.plot_subsets(plots.curve_frame(Experiment.from_config(config)), rows, str(path), pooled=pooled)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = stats.format_table(stats.summarize(Experiment.from_config(config), rows))
  assert "IML gap EM(d1consis) - EM(d2consis)  +0.133" in table
  assert "(paired t-test over the 3 stage-1 seeds)" in table and "ignores the pairing by seed" in table
  d1_line = next(line for line in table.splitlines() if line.strip().startswith("d1consis"))
  assert "D5cons (tag 1)" in d1_line and d1_line.endswith("n = 3")


def test_alignment_summary_by_hand(tmp_path):
  """docs/statistics.md: per seed the mean cosine of each set at the last measurement, then the gap
  cos(tag A) − cos(tag B) over seeds with its t-interval and one-sided p — signed so that tag A ahead is > 0."""
  from iml_jax.io_utils import append_jsonl

  config = _config(n_seeds=3, n_seeds_stage2=1)
  config.stage_names = ("stage1",)
  cos = {0: ([0.3, 0.5], [0.1, 0.3]), 1: ([0.35, 0.35], [0.3, 0.3]), 2: ([0.6, 0.4], [0.2, 0.2])}
  for seed, (tag_a, tag_b) in cos.items():
    records = [
      {"epoch": 1, "step": 5, "set": "d1consis", "cos": [0.0, 0.0], "dist": [1.0, 1.0]},  # not the last
      {"epoch": 4, "step": 20, "set": "d1consis", "cos": tag_a, "dist": [2.0, 2.0]},
      {"epoch": 4, "step": 20, "set": "d2consis", "cos": tag_b, "dist": [3.0, 3.0]},
      {"epoch": 4, "step": 20, "set": "all", "variance": 0.5, "mean_cos_to_mean": 0.1},
    ]
    (tmp_path / f"seed_{seed}" / "stage1").mkdir(parents=True)
    append_jsonl(str(tmp_path / f"seed_{seed}" / "stage1" / "grad_alignment.jsonl"), records)
  summary = stats.summarize_alignment(config, str(tmp_path))["stage1"]
  gaps = np.array([0.2, 0.05, 0.3])
  assert summary["epoch"] == 4
  assert summary["d1consis"]["cos"]["mean"] == pytest.approx(np.mean([0.4, 0.35, 0.5]))
  assert summary["cos_gap"]["definition"] == "cos(d1consis) - cos(d2consis)"
  assert summary["cos_gap"]["mean"] == pytest.approx(gaps.mean())
  assert summary["cos_gap"]["ci95"] == pytest.approx(scipy_stats.t.ppf(0.975, 2) * gaps.std(ddof=1) / math.sqrt(3))
  t = gaps.mean() / (gaps.std(ddof=1) / math.sqrt(3))
  assert summary["cos_gap"]["p_value"] == pytest.approx(1 - scipy_stats.t.cdf(t, 2))
  assert summary["cos_gap"]["p_value"] < 0.1 < 1 - summary["cos_gap"]["p_value"]  # one-sided, tag A ahead


def test_summary_json_is_exactly_this():
  """summary.json's layout, key by key: what users and the sweep read."""
  config = _config()
  summary = stats.summarize(Experiment.from_config(config), _rows())
  assert set(summary) == {
    "stage",
    "metric",
    "epoch",
    "n_seeds",
    "n_seeds_stage2",
    "subsets",
    "missing",
    "iml_gap",
    "pooled",
    "study",
  }
  assert summary["missing"] == []
  assert (summary["stage"], summary["metric"], summary["n_seeds"], summary["n_seeds_stage2"]) == ("stage2", "em", 3, 2)
  d2 = [0.5, 0.6, 0.6]
  d2_summary = summary["subsets"]["d2consis"]
  assert set(d2_summary) == {"em", "ci95", "f1", "em_per_seed", "seeds"}
  assert d2_summary["seeds"] == [0, 1, 2]
  assert d2_summary["em_per_seed"] == pytest.approx(d2)
  assert (d2_summary["em"], d2_summary["f1"]) == pytest.approx((np.mean(d2), np.mean(d2)))
  assert d2_summary["ci95"] == pytest.approx(scipy_stats.t.ppf(0.975, 2) * np.std(d2, ddof=1) / math.sqrt(3))
  gap = summary["iml_gap"]
  assert set(gap) == {"definition", "mean", "ci95", "p_value", "test", "per_seed", "seeds"}
  assert gap["seeds"] == [0, 1, 2]
  assert gap["definition"] == "EM(d1consis) - EM(d2consis)"
  assert gap["test"] == "one-sided paired t-test over stage-1 seeds"
  assert gap["per_seed"] == pytest.approx([0.2, 0.1, 0.1])
  assert summary["study"] == {
    "experiment": "not one of the study's experiments",
    "deviations": [],
    "project_choices": "",
  }
  pooled = summary["pooled"]
  assert set(pooled) == {"subsets", "ttest"}
  assert set(pooled["subsets"]["d1consis"]) == {"mean", "std", "n", "ci95_bootstrap"}
  assert pooled["ttest"]["definition"] == "EM(d1consis) > EM(d2consis), runs pooled"
  assert pooled["ttest"]["test"] == "one-sided Student t-test (pooled variance) from mean, std, n"
  assert stats.summarize(Experiment.from_config(config), []) == {
    "stage": "stage2",
    "metric": "em",
    "subsets": {},
    "iml_gap": None,
    "study": summary["study"],
  }


def test_summary_reads_the_last_stage_and_needs_both_iml_sets():
  config = _config()
  config.stage_names = ("stage1", "stage2", "stage3")
  config.stages.stage3 = config.stages.stage2
  rows = [dict(r, stage="stage3") for r in _rows()]
  assert stats.summarize(Experiment.from_config(config), rows + [dict(r, em=0.0) for r in _rows()])["iml_gap"][
    "mean"
  ] == pytest.approx(0.4 / 3)
  only_d1 = [r for r in rows if r["subset"] == "d1consis"]
  assert stats.summarize(Experiment.from_config(config), only_d1)["iml_gap"] is None


def test_the_gap_pairs_values_by_seed_never_by_position():
  """Seed 0 lacks its final d1consis records and seed 2 its d2consis ones (a cut eval.jsonl): the gap is over the
  seed that has both (seed 1: 0.7 - 0.6), not seed 1 - seed 0 and seed 2 - seed 1 by list position."""
  rows = [r for r in _rows() if r["epoch"] == 1 or (r["seed"], r["subset"]) not in ((0, "d1consis"), (2, "d2consis"))]
  summary = stats.summarize(Experiment.from_config(_config()), rows)
  assert summary["iml_gap"]["seeds"] == [1]
  assert summary["iml_gap"]["per_seed"] == pytest.approx([0.1])
  assert summary["subsets"]["d1consis"]["seeds"] == [1, 2]
  assert summary["missing"] == [
    "seed_0/s2seed_0/stage2: d1consis",
    "seed_0/s2seed_1/stage2: d1consis",
    "seed_2/s2seed_0/stage2: d2consis",
    "seed_2/s2seed_1/stage2: d2consis",
  ]
  assert "PARTIAL: 4 final records missing (seed_0/s2seed_0/stage2: d1consis, " in stats.format_table(summary)


def test_an_earlier_epoch_is_not_a_final_record():
  """A run whose last record of seed 1 is from epoch 1 (its final epoch cut off) is missing that run."""
  rows = [r for r in _rows() if not (r["seed"] == 1 and r["seed_stage2"] == 0 and r["epoch"] == 2)]
  summary = stats.summarize(Experiment.from_config(_config()), rows)
  assert summary["missing"] == ["seed_1/s2seed_0/stage2: d1consis", "seed_1/s2seed_0/stage2: d2consis"]
  assert summary["subsets"]["d1consis"]["em_per_seed"] == pytest.approx([0.7, 0.7, 0.7])  # seed 1: its s2seed 1


def test_two_seeds_have_an_interval_and_a_p_value():
  rows = [r for r in _rows() if r["seed"] < 2]
  summary = stats.summarize(Experiment.from_config(_config(n_seeds=2)), rows)
  gaps = np.array([0.2, 0.1])
  assert summary["iml_gap"]["ci95"] == pytest.approx(scipy_stats.t.ppf(0.975, 1) * gaps.std(ddof=1) / math.sqrt(2))
  t = gaps.mean() / (gaps.std(ddof=1) / math.sqrt(2))
  assert summary["iml_gap"]["p_value"] == pytest.approx(1 - scipy_stats.t.cdf(t, 1))
  assert stats.mean_ci95([1, 3]) == pytest.approx((2.0, scipy_stats.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2)))


def test_lower_is_better_scores_flip_the_gap():
  """The 1-D toy's MSE: IML is a lower d1consis error, so the gap is MSE(d2consis) − MSE(d1consis)."""
  toy = dataclasses.replace(Experiment.from_config(_config()), task="toy1d")  # only its score matters here
  rows = [
    dict(seed=s, seed_stage2=0, stage="stage2", epoch=2, global_epoch=6, subset=k, mse=v)
    for s, (d1, d2) in enumerate([(0.1, 0.3), (0.2, 0.3), (0.1, 0.25)])
    for k, v in (("d1consis", d1), ("d2consis", d2))
  ]
  summary = stats.summarize(toy, rows)
  assert summary["iml_gap"]["definition"] == "MSE(d2consis) - MSE(d1consis)"
  assert summary["iml_gap"]["per_seed"] == pytest.approx([0.2, 0.1, 0.15])
  assert summary["pooled"]["ttest"]["definition"] == "MSE(d2consis) > MSE(d1consis), runs pooled"


def test_bootstrap_percentiles_by_hand():
  values = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.2])
  means = values[np.random.default_rng(0).integers(6, size=(1000, 6))].mean(1)
  assert stats.bootstrap_ci95(values) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))


def test_alignment_summary_layout_seed_range_and_missing_sets(tmp_path):
  """Keys of summary.json's grad_alignment; seeds counted from config.seed; a seed without records is skipped,
  not the end; no gap without both tags; one seed: no interval, no p-value."""
  from iml_jax.io_utils import append_jsonl

  config = _config(n_seeds=3, n_seeds_stage2=1)
  config.seed = 5
  config.stage_names = ("stage1",)
  for seed in (6, 7):  # seed 5 has no records
    (tmp_path / f"seed_{seed}" / "stage1").mkdir(parents=True)
    append_jsonl(
      str(tmp_path / f"seed_{seed}" / "stage1" / "grad_alignment.jsonl"),
      [
        {"epoch": 2, "step": 4, "set": "d1consis", "cos": [0.5], "dist": [1.0]},
        {"epoch": 2, "step": 4, "set": "d2consis", "cos": [0.2 + 0.1 * (seed - 6)], "dist": [2.0]},
        {"epoch": 2, "step": 4, "set": "all", "variance": 0.5, "mean_cos_to_mean": 0.1},
      ],
    )
  summary = stats.summarize_alignment(config, str(tmp_path))["stage1"]
  assert set(summary) == {"epoch", "d1consis", "d2consis", "all", "cos_gap"}
  assert summary["d1consis"] == {"cos": {"mean": 0.5, "ci95": 0.0}, "dist": {"mean": 1.0, "ci95": 0.0}}
  assert summary["all"]["variance"]["mean"] == 0.5 and summary["all"]["mean_cos_to_mean"]["mean"] == 0.1
  assert summary["cos_gap"]["mean"] == pytest.approx(0.25)
  one_seed = stats.summarize_alignment(_config_with(config, n_seeds=2), str(tmp_path))["stage1"]["cos_gap"]
  assert one_seed["ci95"] is None and one_seed["p_value"] is None
  (tmp_path / "seed_6" / "stage1" / "grad_alignment.jsonl").unlink()
  append_jsonl(
    str(tmp_path / "seed_6" / "stage1" / "grad_alignment.jsonl"),
    [{"epoch": 2, "step": 4, "set": "d1consis", "cos": [0.5], "dist": [1.0]}],
  )
  (tmp_path / "seed_7" / "stage1" / "grad_alignment.jsonl").unlink()
  assert "cos_gap" not in stats.summarize_alignment(_config_with(config, n_seeds=2), str(tmp_path))["stage1"]


def _config_with(config, **changes):
  config = config.copy_and_resolve_references()
  config.update(changes)
  return config


def test_pooled_statistics_need_two_runs_per_subset():
  rows = [r for r in _rows() if r["seed"] == 0 and r["seed_stage2"] == 0]
  pooled = stats.summarize(Experiment.from_config(_config(n_seeds=1, n_seeds_stage2=1)), rows)["pooled"]
  assert pooled["subsets"]["d1consis"]["std"] is None and pooled["ttest"] is None
  two = [r for r in _rows() if r["seed"] == 0]
  assert stats.summarize(Experiment.from_config(_config(n_seeds=1)), two)["pooled"]["ttest"]["p_value"] is not None


def test_the_alignment_verdict_follows_the_paired_test():
  def alignment(p_value, ci95=0.01):
    value = {"mean": 0.2, "ci95": ci95}
    gap = {"definition": "cos(d1consis) - cos(d2consis)", "mean": 0.012, "ci95": ci95, "p_value": p_value}
    sets = {name: {"cos": value, "dist": value} for name in ("d1consis", "d2consis")}
    return {"stage1": {"epoch": 8, **sets, "all": {"variance": value}, "cos_gap": gap}}

  shown = stats.format_alignment(alignment(0.01)).splitlines()
  assert shown[0] == (
    "stage1 (epoch 8): cos(d1consis) - cos(d2consis) = +0.0120 ± 0.0100, one-sided p = 0.01: "
    "tag A's definitions align better with their questions"
  )
  assert shown[1:] == [
    f"  {name:28s} cos +0.2000 ± 0.0100   distance +0.2000 ± 0.0100" for name in ("d1consis", "d2consis")
  ]
  assert stats.format_alignment(alignment(0.2)).splitlines()[0].endswith("p = 0.2: no difference shown")
  assert "(one stage-1 seed: no test)" in stats.format_alignment(alignment(None, ci95=None))


def test_the_alignment_vs_batch_verdict_compares_the_smallest_and_largest_batch():
  from iml_jax.plots import AlignmentAtBatch

  def point(batch, gap):
    cos = [{"mean": 0.2 + gap, "ci95": 0.01}, {"mean": 0.2, "ci95": 0.01}]
    return AlignmentAtBatch(batch, ["d1consis", "d2consis"], cos, {"mean": gap, "ci95": 0.005, "p_value": 0.01})

  shown = stats.format_alignment_vs_batch([point(128, 0.013), point(4096, 0.001)]).splitlines()
  assert shown[0] == "alignment vs batch size: tag A's advantage falls from batch 128 to 4096"
  assert shown[1] == "  batch    128  cos d1consis +0.2130, d2consis +0.2000, gap +0.0130 ± 0.0050, p = 0.01"
  rising = stats.format_alignment_vs_batch([point(128, 0.001), point(4096, 0.013)])
  assert rising.startswith("alignment vs batch size: tag A's advantage does not fall from batch 128 to 4096")
