r"""Embedded default: IML on numeric set inclusion, sized for 2 CPU cores (CPU_SCALE.md recipe R5).

Command:
  python -m iml_jax.main --config=configs/default.py --workdir=/tmp/iml_default

Task: aliases `abc` stand for numbers; Stage 1 trains "is x in {...}?" questions about qd1consis and
qd2incons aliases plus definitions (`define1 abc % x` true, `define2 abc % x'` false). Stage 2 trains only
true definitions of new aliases, half `define1` (d1consis), half `define2` (d2consis). IML shows as
EM(d1consis) > EM(d2consis) on their (never trained) questions.

Two deviations from the study, both needed at this scale (CPU_SCALE.md):
  1. Stage-1 training questions are redrawn from their rule every epoch, 4 numbers per question, and the
     loss skips the unpredictable alias token.
  2. Stage 2 trains only the alias tokens' embedding rows.
The study-faithful Stage 2 is one override away: --config.stages.stage2.trainable=all
(measured at this scale: no significant gap, as CPU_SCALE.md reports).

Hardware and time: 2 CPU cores, measured wall time and result in README.md's configs table.
Expected: d1consis ≈ 0.75, d2consis ≈ 0.58, IML gap ≈ +0.17 with a 95% CI excluding 0 (5 seeds).

Argument `tiny` shrinks everything for tests: configs/default.py:tiny
"""
from iml_jax import config_defaults as cd


def get_config(arg: str | None = None):
  args = cd.parse_arg(arg)
  cd.check_arg(args, ("tiny",), "configs/default.py")
  data = cd.numeric_data(num_x=1000, n_nums=4, all_alias_tokens=False, redraw_train_questions=True,
                         block_size=10)
  model = cd.gpt_neox(d_model=64, n_layers=2, n_heads=4, d_mlp=256, position_embedding="learned",
                      parallel_residual=False)
  adamw = dict(name="adamw", b2=0.98, warmup_frac=0.02, grad_clip=0.0)
  stages = dict(
      stage1=cd.stage("stage1", epochs=30, batch_size=128, eval_every=10,
                      optimizer_config=cd.optimizer(lr=3e-3, **adamw)),
      stage2=cd.stage("stage2", epochs=100, batch_size=64, eval_every=25, trainable="alias_embeddings",
                      optimizer_config=cd.optimizer(lr=3e-2, **adamw)))
  config = cd.base("numeric", data, model, stages, n_seeds=5,
                   loss=dict(mask_prompt=False, mask_padding=False, exclude_alias_tokens=True),
                   eval=dict(batch_size=1024, max_new_tokens=2, subsets="all", prompt_bucket=8))
  if "tiny" in args:
    config.n_seeds = 2
    config.data.num_x = 60
    config.model.update(d_model=16, n_layers=1, n_heads=2, d_mlp=32)
    config.stages.stage1.update(epochs=2, batch_size=32, eval_every=1)
    config.stages.stage2.update(epochs=2, batch_size=8, eval_every=1)
    config.eval.batch_size = 64
    config.log_every = 5
  return config
