r"""Three stages (docs/study.md §4.4): definitions only, then QA only, then the new definitions of stage 2.

Command: (needs the CVDB file or the T-REx triplets, the model's weights and an accelerator)
  python -m iml_jax.main --config=configs/three_stage.py --workdir=$RUNS/three_stage \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv
`model=pythia-410m` (CVDB: 20 seeds from 610), `kb=trex` for T-REx (block 64, 16 new tokens).

Stages stage1_only_defns (20 epochs) -> stage1_only_qa (20) -> stage2 (10); fractions without tag 3; batch 256,
Adafactor 5e-5, 20 new tokens, 10 x 3 seeds from 600. Hardware: one 80 GB accelerator per seed (2.8B).
Study's result: none published (§11.4); the variant asks whether IML needs definitions and QA mixed.
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(model="pythia-2.8b", kb="cvdb", tiny=False), "configs/three_stage.py")
  model_key = args["model"]
  kb = args["kb"]
  small_cvdb = model_key == "pythia-410m" and kb == "cvdb"
  config = blocks.study_define(
    blocks.pretrained_arg(args["model"], ("pythia-2.8b", "pythia-410m")),
    kb,
    n_seeds=20 if small_cvdb else 10,
    n_seeds_stage2=3,
    seed=610 if small_cvdb else 600,
    fractions=dict(study_settings.NO_D3),
  )
  config.study = f"three_stage:model={model_key},kb={kb}"
  stage2 = config.stages.stage2
  config.stage_names = ("defns", "qa", "stage2")
  config.stages = dict(
    defns=blocks.stage("stage1_only_defns", epochs=20, batch_size=256, grad_accum=2),
    qa=blocks.stage("stage1_only_qa", epochs=20, batch_size=256, grad_accum=2),
    stage2=stage2,
  )
  config.eval.max_new_tokens = 20
  return blocks.shrink_for_tests(config) if args["tiny"] else config
