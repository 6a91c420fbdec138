"""The workdir's layout: the tidy rows a report reads, on a local disk and in a bucket."""

import os

from iml_jax import io_utils
from iml_jax import workdir as workdir_layout
from iml_jax.specs import Experiment
from test_stats import _config


def test_rows_carry_the_epoch_offset_of_their_stage(storage_root):
  """results.csv: global_epoch = the epochs of the stages before + the epoch within the stage."""
  config = _config(n_seeds=1, n_seeds_stage2=1)
  for stage, epoch in (("stage1", 4), ("stage2", 2)):
    directory = os.path.join(storage_root, "seed_0", "s2seed_0" if stage == "stage2" else "", stage)
    io_utils.makedirs(directory)
    record = {"epoch": epoch, "subset": "d1consis", "em": 0.5, "f1": 0.6}
    io_utils.append_jsonl(os.path.join(directory, "eval.jsonl"), [record])
  rows = workdir_layout.collect_rows(Experiment.from_config(config), storage_root)
  assert rows == [
    dict(seed=0, seed_stage2=0, stage="stage1", epoch=4, global_epoch=4, subset="d1consis", em=0.5, f1=0.6),
    dict(seed=0, seed_stage2=0, stage="stage2", epoch=2, global_epoch=6, subset="d1consis", em=0.5, f1=0.6),
  ]
  assert workdir_layout.result_columns(config.task) == (
    "seed",
    "seed_stage2",
    "stage",
    "epoch",
    "global_epoch",
    "subset",
    "em",
    "f1",
  )


def test_rows_offset_every_later_stage_by_all_earlier_epochs(storage_root):
  config = _config(n_seeds=1, n_seeds_stage2=1)
  config.seed = 3
  config.stage_names = ("stage1", "middle", "stage2")
  config.stages.middle = config.stages.stage1
  config.stages.middle.train_subset = "stage1"
  for stage in config.stage_names:
    directory = os.path.join(storage_root, "seed_3", "s2seed_0" if stage == "stage2" else "", stage)
    io_utils.makedirs(directory)
    io_utils.append_jsonl(os.path.join(directory, "eval.jsonl"), [{"epoch": 1, "subset": "q", "em": 0.5, "f1": 0.5}])
  rows = workdir_layout.collect_rows(Experiment.from_config(config), storage_root)
  assert [(r["seed"], r["stage"], r["global_epoch"]) for r in rows] == [
    (3, "stage1", 1),
    (3, "middle", 5),
    (3, "stage2", 9),
  ]
