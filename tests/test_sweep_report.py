"""Sweep aggregation on a synthetic results table: pooling, per-setting numbers by hand, curves, report.md."""

import math

import numpy as np
import pytest
from scipy import stats

from iml_jax import sweep_report
from iml_jax.metrics import EXACT_MATCH
from iml_jax.specs import Experiment
from test_stats import _config


def _rows_and_plan():
  """Two batch sizes × three seeds (one run each) × two stage-2 seeds; batch 32 has gaps 0.2, 0.1, 0.1."""
  gaps = {16: [0.0, 0.05, -0.05], 32: [0.2, 0.1, 0.1]}
  rows, runs = [], {}
  for batch, per_seed in gaps.items():
    for seed, gap in enumerate(per_seed):
      name = f"seed={seed},stages.stage2.batch_size={batch}"
      runs[name] = {"seed": str(seed), "stages.stage2.batch_size": str(batch)}
      for s2, noise in enumerate((0.1, -0.1)):
        for subset, em in (("d1consis", 0.5 + gap + noise), ("d2consis", 0.5 + noise)):
          rows.append(
            dict(
              run=name,
              **runs[name],
              seed_stage2=s2,
              stage="stage2",
              epoch=2,
              global_epoch=6,
              subset=subset,
              em=em,
              f1=em,
            )
            | {"seed": seed}
          )
  plan = {
    "config": "configs/x.py",
    "axes": [["seed", ["0", "1", "2"]], ["stages.stage2.batch_size", ["16", "32"]]],
    "runs": runs,
  }
  configs = {name: Experiment.from_config(_config(n_seeds=1)) for name in runs}
  return plan, rows, configs, gaps


def test_seed_runs_are_pooled_into_one_setting_per_value():
  plan, rows, configs, gaps = _rows_and_plan()
  summaries = sweep_report.summarize_settings(plan, rows, configs)
  assert [s["values"] for s in summaries] == [{"stages.stage2.batch_size": "16"}, {"stages.stage2.batch_size": "32"}]
  for entry, batch in zip(summaries, (16, 32)):
    assert len(entry["runs"]) == 3
    gap = entry["summary"]["iml_gap"]
    by_hand = np.array(gaps[batch])
    assert entry["summary"]["n_seeds"] == 3
    assert gap["mean"] == pytest.approx(by_hand.mean())
    assert gap["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * by_hand.std(ddof=1) / math.sqrt(3))
    d1 = [0.5 + g for g in gaps[batch]]  # stage-2 noise averages out
    assert gap["p_value"] == pytest.approx(stats.ttest_rel(d1, [0.5] * 3, alternative="greater").pvalue)


def test_gap_curve_and_markdown(tmp_path):
  plan, rows, configs, _ = _rows_and_plan()
  summaries = sweep_report.summarize_settings(plan, rows, configs)
  (path,) = sweep_report.plot_gap_curves(plan, summaries, str(tmp_path / "plots"))
  assert path.endswith("gap_vs_stages.stage2.batch_size.png")
  import matplotlib.image

  assert matplotlib.image.imread(path).shape[2] == 4  # a real PNG
  text = sweep_report.markdown(plan, summaries, [path], str(tmp_path), EXACT_MATCH)
  assert "| stages.stage2.batch_size=32 | 3 | 0.633 ± " in text
  assert "(plots/gap_vs_stages.stage2.batch_size.png)" in text
  assert "| d1consis | d2consis |" in text.replace(" gap |", "")


def test_batch_size_sweep_with_alignment_draws_cosine_vs_batch(tmp_path):
  import json

  plan = {"config": "c", "axes": [["stages.stage2.batch_size", ["16", "32"]]], "runs": {}}
  for batch, (cos_a, cos_b) in ((16, (0.3, 0.2)), (32, (0.25, 0.24))):
    name = f"stages.stage2.batch_size={batch}"
    plan["runs"][name] = {"stages.stage2.batch_size": str(batch)}
    config = _config()
    config.stages.stage2.batch_size = batch
    config.stage_names = ("stage2", "stage1")  # the figure uses the first stage
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(config.to_json())
    alignment = {
      "stage2": {"d1consis": {"cos": {"mean": cos_a, "ci95": 0.01}}, "d2consis": {"cos": {"mean": cos_b, "ci95": 0.01}}}
    }
    (tmp_path / name / "summary.json").write_text(json.dumps({"grad_alignment": alignment}))
  (path,) = sweep_report.alignment_plot(plan, str(tmp_path))
  assert path.endswith("alignment_vs_batch.png") and (tmp_path / "plots" / "alignment_vs_batch.png").exists()
  two_axes = dict(plan, axes=plan["axes"] + [["seed", ["0"]]])
  assert sweep_report.alignment_plot(two_axes, str(tmp_path)) == []
  (tmp_path / "stages.stage2.batch_size=32" / "summary.json").write_text("{}")
  assert sweep_report.alignment_plot(plan, str(tmp_path)) == []
