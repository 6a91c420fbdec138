r"""The study's main experiment: Pythia-2.8B on CVDB, two stages (STUDY.md §3, §7.3, §11.2).

Command: (needs the CVDB file, Pythia weights and an accelerator)
  python -m iml_jax.main --config=configs/pythia_cvdb_2stage.py --workdir=$WORKDIR \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv

Data: the 4,000 most-read CVDB people (2,000 men, 2,000 women), fractions q_no_repl .1 / qd1consis .25 /
qd2incons .25 / q .1 / d1 .08 / d2 .08 / d3 .08 / no_qd .06 (400/1000/1000/400/320/320/320/240 entities),
`tve` definitions, entity-association test sets. Stage 1: 16,000 examples, 20 epochs; stage 2: 960 definitions,
10 epochs; batch 256 (128 x 2 accumulation); HF Adafactor lr 5e-5 linear to 0, clip 1.0; bf16 compute;
block 48, 8 new tokens; 20 stage-1 seeds (600-619) x 5 stage-2 seeds.

Weights: `model.init_from` names Pythia-2.8B-deduped (downloaded when the hub is reachable); offline, point it at
a local copy of the model folder: --config.model.init_from=/models/pythia-2.8b-deduped
Study's result (poster, ±0.005): after stage 2 EM d1consis ≈ 0.31 > d3consis ≈ 0.30 > d2consis ≈ 0.28;
entity-association "name" gap ≈ +0.11. Hardware: one 80 GB accelerator per seed (not timed here).
"""
from iml_jax import config_defaults as cd


def get_config(arg: str | None = None):
  cd.check_arg(cd.parse_arg(arg), (), "configs/pythia_cvdb_2stage.py")
  data = cd.define_data(knowledge_base="cvdb", cvdb_path="datasets/cvdb/cross-verified-database.csv",
                        entity_association_test_sets=True)
  model = cd.gpt_neox(init_from="EleutherAI/pythia-2.8b-deduped", d_model=2560, n_layers=32, n_heads=32,
                      d_mlp=10240, dtype="bfloat16")
  stages = dict(stage1=cd.stage("stage1", epochs=20, batch_size=256, grad_accum=2),
                stage2=cd.stage("stage2", epochs=10, batch_size=256, grad_accum=2))
  return cd.base("define", data, model, stages, seed=600, n_seeds=20, n_seeds_stage2=5,
                 eval=dict(batch_size=256, max_new_tokens=8, subsets="all", prompt_bucket=8),
                 checkpoint=dict(every_steps=0, max_to_keep=1))
