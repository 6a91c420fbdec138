"""Sweep aggregation on a synthetic results table: pooling, per-setting numbers by hand, curves, report.md."""
import math

import numpy as np
import pytest
from scipy import stats

from iml_jax import sweep_report
from test_report import _config


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
          rows.append(dict(run=name, **runs[name], seed_stage2=s2, stage="stage2", epoch=2, global_epoch=6,
                           subset=subset, em=em, f1=em) | {"seed": seed})
  plan = {"config": "configs/x.py", "axes": [["seed", ["0", "1", "2"]], ["stages.stage2.batch_size", ["16", "32"]]],
          "runs": runs}
  configs = {name: _config(n_seeds=1) for name in runs}
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
  text = sweep_report.markdown(plan, summaries, [path], str(tmp_path))
  assert "| stages.stage2.batch_size=32 | 3 | 0.633 ± " in text
  assert "(plots/gap_vs_stages.stage2.batch_size.png)" in text
  assert "| d1consis | d2consis |" in text.replace(" gap |", "")
