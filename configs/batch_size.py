r"""Batch-size sweep (docs/study.md §4.8): one stage on all data (`full`), no tag 3, 5 seeds per batch size.

Command: (needs the CVDB file, the model's weights and an accelerator)
  for b in 16 32 64 128 256 512 1024 2048 4096 8192 16384 32768; do
    python -m iml_jax.main --config=configs/batch_size.py:batch=$b --workdir=$RUNS/bs$b \
        --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv; done
Pythia-1B (default) grid, batch (epochs): 16-64 (30), 128 (40), 256-4096 (60), 8192/16384 (120), 32768 = 512 x 64
(240, i.e. full batch: 16,800 examples). `model=pythia-2.8b`: 128 (20), 512 (31), 1024/2048 (41), 4096 (61),
8192 (81), 16384 (151). Batches above 512 accumulate micro-batches of 512.
Hardware: one 40-80 GB accelerator per run (not timed here).
Study's result (qualitative, §11.4): smaller batches give more IML; full-batch training removes it.
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings
from iml_jax.errors import IMLError


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(model="pythia-1b", batch=256, tiny=False), "configs/batch_size.py")
  model_key, batch = args["model"], args["batch"]
  model = blocks.pretrained_arg(model_key, tuple(study_settings.BATCH_GRIDS))
  grid = study_settings.BATCH_GRIDS[model_key]
  if batch not in grid:
    raise IMLError(f"configs/batch_size.py: batch={batch} is not in the {model_key} grid {sorted(grid)}")
  # Accumulation is published for the full batch only; ours: micro-batches of 512, as there.
  config = blocks.study_define(study_settings.batch_size(batch, model_key), model, grad_accum=max(batch // 512, 1))
  return blocks.shrink_for_tests(config) if args["tiny"] else config
