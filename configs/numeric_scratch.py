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
from iml_jax import study_settings


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(variant="70m"), "configs/numeric_scratch.py")
  row = study_settings.numeric(args["variant"])
  t5 = row.model.startswith("t5")
  return blocks.from_row(
    row,
    blocks.numeric_data(**(dict(label_block_size=4) if t5 else {})),  # ours: a T5 target (answer, EOS) fits 4
    blocks.pretrained(row.model, weights=False),
    # Ours where the study's config is silent: seeds from 0, 20 stage-1 seeds, one stage-2 seed.
    dict(seed=0, n_seeds=20, n_seeds_stage2=1, grad_accum=1),
    ("q_only", "stage1", "stage2") if args["variant"] == "pretraining" else (),
    eval_every=5,
    eval=dict(batch_size=1024),
    checkpoint=dict(every_steps=2000, max_to_keep=2),
  )
