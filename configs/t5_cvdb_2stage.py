r"""The study's T5 runs: T5-3B (seq2seq) on CVDB, two stages (docs/study.md §7.1, §7.4, §7.5).

Command: (needs the CVDB file, T5 weights and an accelerator)
  python -m iml_jax.main --config=configs/t5_cvdb_2stage.py --workdir=$WORKDIR \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv

Differences from configs/pythia_cvdb_2stage.py: the encoder reads the question (definitions: their first
part), the decoder writes the answer; inputs padded to data.block_size, targets (+ EOS, pads counted in
the loss) to data.label_block_size = 8; batch 64 x 4 accumulation = 256; 10 seeds x 3 stage-2 seeds. Ours, as
the study does not say: 20 + 10 epochs, the start seed 600 and the main run's fractions with tag 3.
`model=t5-small` for a smaller run. Weights: offline, --config.model.init_from=/models/t5-3b.
Study's result: the poster reports "similar results" (IML) for T5 without numbers (docs/study.md §11.4), so no
number is claimed here. Hardware: one 80 GB accelerator per seed (not timed here).
TPU plan (compile-time estimates, `python -m iml_jax.tpu_plan --config=configs/t5_cvdb_2stage.py --tpu=v4-8`):
13.0 GiB per chip on a v4-8, a step bound of 476 ms, 7.0 chip-hours for the 10 x 3 seeds.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(model="t5-3b"), "configs/t5_cvdb_2stage.py")
  row = study_settings.t5_cvdb()
  config = blocks.study_define(row, blocks.pretrained(args["model"]))
  config.deviations = blocks.model_deviation(args["model"], row.model)
  return config
