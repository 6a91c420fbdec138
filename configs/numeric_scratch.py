r"""The study's from-scratch set-inclusion run (STUDY.md §5.3, `pythia70m_tokpervar_bs512_n8_i1.yaml`).

Command:
  python -m iml_jax.main --config=configs/numeric_scratch.py --workdir=$WORKDIR

Pythia-70M architecture, random init; 8,000 aliases (one token each, 17,711-token vocabulary), 8 numbers per
question, n_intersection 1, 24 questions per alias, fractions qd1consis .4 / qd2incons .4 / d1consis .1 /
d2consis .1; HF-equivalent Adafactor at lr 5e-5, batch 512, 100 + 40 epochs, bf16, eval every 5 epochs;
20 stage-1 seeds (630-649) x 3 stage-2 seeds. Stage 1: 83,200 examples (163 steps/epoch).

Hardware: an accelerator (the study: one A100/H100 per seed); not timed here.
Study's result: the poster reports IML "works with Pythia-70M" on this task (no number published).
At CPU scale the same task only shows IML with two deviations: see configs/default.py.
"""
from iml_jax import config_defaults as cd


def get_config(arg: str | None = None):
  cd.check_arg(cd.parse_arg(arg), (), "configs/numeric_scratch.py")
  stages = dict(stage1=cd.stage("stage1", epochs=100, batch_size=512, eval_every=5),
                stage2=cd.stage("stage2", epochs=40, batch_size=512, eval_every=5))
  return cd.base("numeric", cd.numeric_data(), cd.gpt_neox(dtype="bfloat16"), stages, seed=630, n_seeds=20,
                 n_seeds_stage2=3, eval=dict(batch_size=1024, max_new_tokens=4, subsets="all", prompt_bucket=8),
                 checkpoint=dict(every_steps=2000, max_to_keep=2))
