r"""Embedded default: IML on numeric set inclusion, sized for 2 CPU cores (after docs/cpu_scale.md, recipe R5).

Command:
  python -m iml_jax.main --config=configs/default.py --workdir=/tmp/iml_default

Task: aliases `abc` stand for numbers; Stage 1 trains "is x in {...}?" questions about qd1consis and
qd2incons aliases plus definitions (`define1 abc % x` true, `define2 abc % x'` false). Stage 2 trains only
true definitions of new aliases, half `define1` (d1consis), half `define2` (d2consis). IML shows as
EM(d1consis) > EM(d2consis) on their (never trained) questions.

Three deviations from the study make IML visible at this scale (docs/cpu_scale.md); the rest is size. The run
prints all of them under its result, each with its fields' values and the study's:
  1. Stage-1 training questions are redrawn from their rule every epoch;
  2. the loss skips the unpredictable alias token;
  3. Stage 2 trains only the alias tokens' embedding rows.
  CPU size: 1,000 aliases, 4 numbers per question, a 2-layer d=64 model, AdamW, batch 128 / 64, 45 / 50 epochs,
  fp32, 5 seeds.

Expected (2 CPU cores, 340 s with an empty compilation cache, 2026-12-06): d1consis 0.758 ± 0.096, d2consis
0.572 ± 0.051, IML gap +0.186 ± 0.090, one-sided paired p = 0.0023 (EM, mean ± 95% CI over the 5 stage-1 seeds).
Reruns on one machine are identical; XLA's CPU rounding differs between processors (another 2-core machine:
gap +0.232 ± 0.067, p = 0.0003). Why each setting, and what the alternatives gave: docs/cpu_scale.md.

Argument `faithful` drops deviations 1-3 (fixed questions, every token in the loss, Stage 2 on all parameters at
lr 3e-4; a larger lr wrecks the model) and keeps the CPU size:
  python -m iml_jax.main --config=configs/default.py:faithful --workdir=/tmp/iml_faithful
Measured (2 CPU cores shared with other jobs, 35 min, 5 seeds): d1consis 0.500 ± 0.007, d2consis 0.498 ± 0.024,
gap +0.002 ± 0.022, p = 0.41 — no IML; Stage 1 does not generalise either (qd1consis 0.541: the fixed training
questions are memorised). With 8 numbers per question as well: gap -0.007 ± 0.013, qd1consis 0.507 (49 min).

Argument `reduced`: 500 aliases, 35 Stage-1 epochs and 5 seeds, the headline effect in about 3 minutes; the test
suite runs it (tests/test_default_config.py) and requires the gap's 95% interval to exclude 0.
Measured (2 CPU cores, 170-181 s, 2026-12-01): d1consis 0.781 ± 0.100, d2consis 0.618 ± 0.033, gap +0.163 ±
0.082, p = 0.0026, every seed +0.10 or more, Stage-1 QA >= 0.997 on every seed; fewer epochs or aliases leave some
seeds' Stage 1 unlearnt (docs/cpu_scale.md).

Argument `tiny` shrinks everything for tests: configs/default.py:tiny
"""

import ml_collections

from iml_jax import config_blocks as blocks

# What the default does differently from the study's Pythia-70M set-inclusion run; the first three are what
# makes IML visible at this scale (docs/cpu_scale.md), the rest is size. The values come with each line as the
# run prints it (iml_jax/study_settings.py: deviations), so the sentences name none.
REDRAWN_QUESTIONS = "Stage-1 questions are redrawn from their rule every epoch [data.redraw_train_questions]"
ALIAS_LOSS_EXCLUDED = "the alias token is left out of the loss [loss.exclude_alias_tokens]"
ALIAS_ROWS_STAGE2 = "Stage 2 trains only the alias tokens' embedding rows [stages.stage2.trainable]"
VISIBILITY_DEVIATIONS = (REDRAWN_QUESTIONS, ALIAS_LOSS_EXCLUDED, ALIAS_ROWS_STAGE2)
# Specific lines first: a field is listed under the first line that names it.
CPU_SCALE_DEVIATIONS = (
  "AdamW at CPU learning rates instead of Adafactor [stages.*.optimizer.*]",
  "fewer numbers per question: with the study's count the small model does not learn Stage 1 "
  "[data.n_nums, data.block_size]",
  "tokens only for the aliases in use, not for every three-letter string [data.all_alias_tokens]",
  "fp32 compute, not bf16 autocast [model.dtype]",
  "fewer seeds [seed, n_seeds, n_seeds_stage2]",
  "fewer new tokens decoded: the answer and the pad after it [eval.max_new_tokens]",
  "CPU size: fewer aliases, a small from-scratch model, smaller batches, other epoch counts "
  "[data.num_x, model.*, stages.*.batch_size, stages.*.epochs]",
)


def cpu_scale(stages: dict, **overrides) -> ml_collections.ConfigDict:
  """Set inclusion at 2-CPU-core size with the given stages: the data, model, loss and evaluation of the default."""
  data = blocks.numeric_data(num_x=1000, n_nums=4, all_alias_tokens=False, redraw_train_questions=True, block_size=10)
  # The Pythia block (partial rotary, parallel residual). Init std 1/sqrt(64) (Flax's default scale):
  # with GPT-2's 0.02, Stage 1 does not generalise within the budget.
  model = blocks.gpt_neox(d_model=64, n_layers=2, n_heads=4, d_mlp=256, init_std=0.125, embedding_init_std=0.125)
  return blocks.base(
    "numeric",
    data,
    model,
    stages,
    study="numeric:variant=70m",
    loss=dict(mask_prompt=False, mask_padding=False, exclude_alias_tokens=True),
    eval=dict(batch_size=1024, max_new_tokens=2, subsets="all", prompt_bucket=8),
    **overrides,
  )


def shrink(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`:tiny` — the default's pipeline at a size tests run in seconds."""
  config.deviations = (*config.deviations, blocks.TINY_DEVIATION)
  config.n_seeds = 2
  config.data.num_x = 60
  config.model.update(d_model=16, n_layers=1, n_heads=2, d_mlp=32)
  config.stages.stage1.update(epochs=2, batch_size=32, eval_every=1)
  config.stages.stage2.update(epochs=2, batch_size=8, eval_every=1)
  config.eval.batch_size = 64
  config.log_every = 5
  return config


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(tiny=False, faithful=False, reduced=False), "configs/default.py")
  stages = dict(
    stage1=blocks.stage("stage1", epochs=45, batch_size=128, eval_every=15, optimizer_config=blocks.cpu_adamw(3e-3)),
    stage2=blocks.stage(
      "stage2",
      epochs=50,
      batch_size=64,
      eval_every=25,
      trainable="alias_embeddings",
      optimizer_config=blocks.cpu_adamw(2e-2),
    ),
  )
  config = cpu_scale(stages, n_seeds=5)
  deviations = VISIBILITY_DEVIATIONS
  if args["faithful"]:
    config.data.redraw_train_questions = False
    config.loss.exclude_alias_tokens = False
    config.stages.stage2.trainable = "all"
    config.stages.stage2.optimizer.lr = 3e-4  # 2e-2 on every parameter wrecks the model
    deviations = ()
  if args["reduced"]:
    config.data.num_x = 500
    config.stages.stage1.update(epochs=35, eval_every=35)
    config.stages.stage2.eval_every = 50
  config.deviations = (*deviations, *CPU_SCALE_DEVIATIONS)
  return shrink(config) if args["tiny"] else config
