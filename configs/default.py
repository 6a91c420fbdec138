r"""Embedded default: IML on numeric set inclusion, sized for 2 CPU cores (after docs/cpu_scale.md, recipe R5).

Command:
  python -m iml_jax.main --config=configs/default.py --workdir=/tmp/iml_default

Task: aliases `abc` stand for numbers; Stage 1 trains "is x in {...}?" questions about qd1consis and
qd2incons aliases plus definitions (`define1 abc % x` true, `define2 abc % x'` false). Stage 2 trains only
true definitions of new aliases, half `define1` (d1consis), half `define2` (d2consis). IML shows as
EM(d1consis) > EM(d2consis) on their (never trained) questions.

Three deviations from the study make IML visible at this scale (docs/cpu_scale.md); the rest is size. The run
prints all of them under its result (`deviations` below, iml_jax/config_defaults.py):
  1. Stage-1 training questions are redrawn from their rule every epoch;
  2. the loss skips the unpredictable alias token;
  3. Stage 2 trains only the alias tokens' embedding rows.
  CPU size: 1,000 aliases, 4 numbers per question, a 2-layer d=64 model, AdamW, batch 128 / 64, 45 / 50 epochs,
  fp32, 5 seeds.

Argument `faithful` drops deviations 1-3 (fixed questions, every token in the loss, Stage 2 on all parameters at
lr 3e-4; a larger lr wrecks the model) and keeps the CPU size:
  python -m iml_jax.main --config=configs/default.py:faithful --workdir=/tmp/iml_faithful
Measured (2 CPU cores shared with other jobs, 35 min, 5 seeds): d1consis 0.500 ± 0.007, d2consis 0.498 ± 0.024,
gap +0.002 ± 0.022, p = 0.41 — no IML; Stage 1 does not generalise either (qd1consis 0.541: the fixed training
questions are memorised). With 8 numbers per question as well: gap -0.007 ± 0.013, qd1consis 0.507 (49 min).

Argument `reduced`: 500 aliases, 35 Stage-1 epochs and 5 seeds, the headline effect in about 4 minutes; the test
suite runs it (tests/test_default_config.py) and requires the gap's 95% interval to exclude 0.
Measured (2 CPU cores, 254 s with an empty compilation cache; 317-327 s before programs were cached):
d1consis 0.781 ± 0.100, d2consis 0.618 ± 0.033, gap +0.163 ± 0.082, p = 0.0026, every seed +0.10 or more,
Stage-1 QA >= 0.997 on every seed. (30 Stage-1 epochs left one seed's Stage-1 QA at 0.63: gap +0.117 ± 0.073;
3 seeds at 45 epochs: +0.198 ± 0.224, interval includes 0.)

Measured on this session's machine (2 CPU cores, 865 s): d1consis 0.752 ± 0.089, d2consis 0.557 ± 0.054, gap
+0.195 ± 0.085, p = 0.0016 (per seed +0.09, +0.24, +0.27, +0.19, +0.20) — loss-for-loss what the code before this
session gives on the same machine; XLA's CPU rounding differs between processors. On an earlier, faster machine:
Measured (2 CPU cores, 5 seeds, the command above): 394 s wall time;
  d1consis 0.800 ± 0.078, d2consis 0.568 ± 0.062, qd1consis 0.999 (EM, mean ± 95% CI over stage-1 seeds);
  IML gap +0.232 ± 0.067, every seed positive (+0.16 … +0.30), one-sided paired p = 0.0003.
  (Before q, k and v became separate projections, which changes the initialisation draw: gap +0.171 ± 0.078.)
  (docs/cpu_scale.md's R5: d1consis 0.746, d2consis 0.577, gap +0.169 ± 0.048.)
Settings that differ from R5, measured here to be needed or better: the Pythia block (partial rotary,
parallel residual) instead of a GPT-2 block (GPT-2 block, 5 seeds: gap +0.105 ± 0.066, 524 s); init std
0.125 instead of 0.02 (0.02, GPT-2 block, 1 seed: Stage-1 QA 0.79 after 30 epochs, gap +0.02); 45 Stage-1 epochs
instead of 30 (30
left some seeds' QA at 0.6-0.76); Stage 2 lr 2e-2 for 50 epochs instead of 3e-2 for 100.

Argument `tiny` shrinks everything for tests: configs/default.py:tiny
"""
from iml_jax import config_defaults as cd


def get_config(arg: str | None = None):
  args = cd.parse_arg(arg, dict(tiny=False, faithful=False, reduced=False), "configs/default.py")
  config = cd.numeric_cpu_default(faithful=args["faithful"])
  if args["reduced"]:
    config.data.num_x = 500
    config.stages.stage1.update(epochs=35, eval_every=35)
    config.stages.stage2.eval_every = 50
  return cd.shrink_numeric_default(config) if args["tiny"] else config
