r"""Three stages (docs/study.md §4.4): definitions only, then QA only, then the new definitions of stage 2.

Command: (needs the CVDB file or the T-REx triplets, the model's weights and an accelerator)
  python -m iml_jax.main --config=configs/three_stage.py --workdir=$RUNS/three_stage \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv
`model=pythia-410m` (CVDB: 20 seeds from 610), `kb=trex` for T-REx (block 64; 20 new tokens, as in every three-stage
run).

Stages stage1_only_defns (20 epochs) -> stage1_only_qa (20) -> stage2 (10); fractions without tag 3; Adafactor
5e-5, 20 new tokens, 10 x 3 seeds. The batch (256 as 128 x 2) and the start seed (600) are ours: unpublished.
Hardware: one 80 GB accelerator per seed (2.8B).
Study's result: none published (§11.4); the variant asks whether IML needs definitions and QA mixed.
Argument `passes=1` (TPU slices): each step's batch in one pass, the same update with the weights gathered once a
step (config_blocks.in_passes; docs/performance.md, "The study step compiled for a TPU").
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(model="pythia-2.8b", kb="cvdb", tiny=False, passes=0), "configs/three_stage.py")
  model = blocks.pretrained_arg(args["model"], ("pythia-2.8b", "pythia-410m"))
  row = study_settings.three_stage(args["model"], args["kb"])
  config = blocks.study_define(row, model, stage_names=("defns", "qa", "stage2"))
  config = blocks.in_passes(config, args["passes"])
  return blocks.shrink_for_tests(config) if args["tiny"] else config
