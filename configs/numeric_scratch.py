r"""The study's from-scratch set-inclusion runs (docs/study.md §5.3, `configs/num_choice_exps/*`).

Command:
  python -m iml_jax.main --config=configs/numeric_scratch.py --workdir=$WORKDIR
  python -m iml_jax.main --config=configs/numeric_scratch.py:variant=160m_i3 --workdir=$WORKDIR

`variant=` (default 70m = `pythia70m_tokpervar_bs512_n8_i1.yaml`, the poster's "works with Pythia-70M"):
  70m       Pythia-70M shape, 8,000 aliases (one token each), 8 numbers, n_intersection 1, 24 questions per alias,
            qd1consis .4 / qd2incons .4 / d1 .1 / d2 .1, batch 512, 100 + 40 epochs, seeds 630-649 x 3
  70m_d3    the same with fractions .35/.35/.1/.1/.1 (tag 3), seeds 600-619 x 3
  160m      Pythia-160M shape, 60 + 30 epochs, seeds from 800 x 5
  160m_i3   Pythia-160M, n_intersection 3 (the train questions narrow x to 3 numbers), batch 1,024, 150 + 30 epochs
  num_choice  Pythia-70M, 16,000 spelt-out aliases, 4 numbers, 12 questions, label flips 0.1, .45/.45/.05/.05,
            batch 4,096, 400 + 40 epochs, 40 x 5 seeds
  pretraining three stages: q_only (10 epochs) -> stage1_excl_q (50) -> stage2 (10); 40,000 aliases, q .9,
            qd1/qd2 .04, d1/d2 .01, label flips 0.1, batch 4,096, 40 seeds
  t5small   T5-small (seq2seq) from scratch, 4,000 aliases, 4 numbers, flips 0.1, batch 4,096, 400 + 40 epochs,
            block 8, 40 x 5 seeds
All: HF-equivalent Adafactor (lr 5e-5), bf16, block 16, 4 new tokens, evaluation every 5 epochs.
Hardware: an accelerator (the study: one A100/H100 per seed); not timed here. TPU plan (compile-time estimates,
`python -m iml_jax.tpu_plan --config=configs/numeric_scratch.py --tpu=v5litepod-8`): 0.40 GiB per chip on a
v5litepod-8, a step bound of 5.9 ms, 4.4 chip-hours for the 20 x 3 seeds.
Size of the default variant (counted from seed 630's data): Stage 1 trains 83,200 examples, 163 steps of 512 per
epoch, 16,300 steps, and evaluates 21 times; each of a seed's 3 stage-2 runs trains 1,600 definitions, 4 steps per
epoch, 160 steps, and evaluates 8 times. Every evaluation greedily decodes all 180,800 eval examples (every subset,
the training questions and definitions included). With `--config.progress_bar=False` the run prints tokens/s every
50 steps and each evaluation's time, from which the time per epoch follows.
Study's result: IML "works with Pythia-70M" on this task (poster; no number published).
At CPU scale the same task only shows IML with two deviations: see configs/default.py.
"""

from iml_jax import config_blocks as blocks
from iml_jax.errors import IMLError

FLIPPED_SMALL = dict(n_nums=4, n_qs=12, p_label_flip=0.1)


def _two_stages(epochs1, epochs2, batch):
  return dict(
    stage1=blocks.stage("stage1", epochs=epochs1, batch_size=batch, eval_every=5),
    stage2=blocks.stage("stage2", epochs=epochs2, batch_size=batch, eval_every=5),
  )


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(variant="70m"), "configs/numeric_scratch.py")
  variant = args["variant"]
  pythia_160m = dict(d_model=768, n_layers=12, n_heads=12, d_mlp=3072)
  data, model, seeds = blocks.numeric_data(), blocks.gpt_neox(dtype="bfloat16"), (630, 20, 3)
  stages = _two_stages(100, 40, 512)
  if variant == "70m_d3":
    data.fractions.update(qd1consis=0.35, qd2incons=0.35, d3consis=0.1)
    seeds = (600, 20, 3)
  elif variant in ("160m", "160m_i3"):
    model.update(pythia_160m)
    seeds = (800, 20, 5)
    stages = _two_stages(60, 30, 512) if variant == "160m" else _two_stages(150, 30, 1024)
    data.n_intersection = 3 if variant == "160m_i3" else 1
  elif variant == "num_choice":
    data.update(num_x=16000, separate_token_per_var=False, all_alias_tokens=False, **FLIPPED_SMALL)
    data.fractions.update(qd1consis=0.45, qd2incons=0.45, d1consis=0.05, d2consis=0.05)
    stages, seeds = _two_stages(400, 40, 4096), (0, 40, 5)
  elif variant == "pretraining":
    data.update(num_x=40000, **FLIPPED_SMALL)
    data.fractions.update(q=0.9, qd1consis=0.04, qd2incons=0.04, d1consis=0.01, d2consis=0.01)
    stages = dict(
      q_only=blocks.stage("q_only", epochs=10, batch_size=4096, eval_every=5),
      stage1=blocks.stage("stage1_excl_q", epochs=50, batch_size=4096, eval_every=5),
      stage2=blocks.stage("stage2", epochs=10, batch_size=4096, eval_every=5),
    )
    seeds = (0, 40, 1)
  elif variant == "t5small":
    data.update(num_x=4000, block_size=8, label_block_size=4, **FLIPPED_SMALL)
    model = blocks.language_model("t5", dtype="bfloat16")
    stages, seeds = _two_stages(400, 40, 4096), (0, 40, 5)
  elif variant != "70m":
    raise IMLError(
      f"configs/numeric_scratch.py: variant={variant} is not one of 70m, 70m_d3, 160m, 160m_i3, "
      "num_choice, pretraining, t5small"
    )
  seed, n_seeds, n_seeds_stage2 = seeds
  return blocks.base(
    "numeric",
    data,
    model,
    stages,
    seed=seed,
    n_seeds=n_seeds,
    n_seeds_stage2=n_seeds_stage2,
    study=f"numeric:variant={variant}",
    eval=dict(batch_size=1024, max_new_tokens=4, subsets="all", prompt_bucket=8),
    checkpoint=dict(every_steps=2000, max_to_keep=2),
  )
