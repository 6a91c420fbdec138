"""The embedded default's scientific claim, on 2 seeds (slow: about 3.5 minutes on 2 CPU cores)."""
import os

import pytest

from iml_jax import experiment
from test_experiment import ROOT, load_config


@pytest.mark.slow
def test_default_shows_iml_on_every_seed(tmp_path):
  config = load_config(os.path.join(ROOT, "configs", "default.py"))
  config.n_seeds = 2
  config.progress_bar = False
  summary = experiment.run(config, str(tmp_path))
  assert all(gap > 0 for gap in summary["iml_gap"]["per_seed"])
  assert summary["subsets"]["qd1consis"]["em"] > 0.9  # Stage 1 generalised to held-out questions
