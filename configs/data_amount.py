r"""Data amount (docs/study.md §4.6): Pythia-1B on 250 … 2,000 CVDB people, two stages.

Command: (needs the CVDB file, Pythia-1B weights and an accelerator)
  python -m iml_jax.sweep --config=configs/data_amount.py --workdir=$RUNS/data_amount \
      --sweep=data.num_entities=250,500,1000,2000 --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv
Batch 256, Adafactor 5e-5. Ours, as the study does not say: the model-size sweep's fractions without tag 3
(q_no_repl/qd1consis/qd2incons/q/d1/d2/no_qd = .1/.25/.25/.1/.1/.1/.1) and 10 x 5 seeds from 600, 20 + 10
epochs, 128 x 2 accumulation. A size off the study's grid is listed as a deviation. `num_ents=500` picks the size
without a sweep.
Hardware: one 40 GB accelerator per seed (not timed here). Study's result: none published (§11.4).
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.

Argument `cpu`: the same sweep on the embedded default (numeric set inclusion, configs/default.py), whose
1,000 aliases become `num_ents` (same epochs, so fewer aliases also mean fewer steps, as in the study); 2 CPU cores:
  python -m iml_jax.main --config=configs/data_amount.py:cpu,num_ents=500 --workdir=/tmp/iml_data_500
Measured (2 CPU cores, 5 seeds each; EM after stage 2, mean ± 95% CI over seeds; 1,000 is configs/default.py):
  250    d1consis 0.604 ± 0.047, d2consis 0.569 ± 0.062, gap +0.035 ± 0.068, p = 0.11     (169 s)
  500    d1consis 0.786 ± 0.101, d2consis 0.577 ± 0.029, gap +0.210 ± 0.092, p = 0.0016   (242 s)
  1000   d1consis 0.800 ± 0.078, d2consis 0.568 ± 0.062, gap +0.232 ± 0.067, p = 0.0003   (394 s)
  2000   d1consis 0.799 ± 0.130, d2consis 0.605 ± 0.106, gap +0.194 ± 0.068, p = 0.0007   (1533 s*)
  (* while the test suite shared the cores.) With 250 aliases stage 1 has ~300 steps and its QA stays at
  0.81 (the others: 0.99-1.0); IML appears once stage 1 learns the task and is about flat from 500 on.
"""

import os

from iml_jax import config_blocks as blocks
from iml_jax import study_settings

_DEFAULT = blocks.config_module(os.path.join(os.path.dirname(__file__), "default.py"))


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(num_ents=1000, tiny=False, cpu=False), "configs/data_amount.py")
  num_ents = args["num_ents"]
  if args["cpu"]:
    config = _DEFAULT.get_config()
    config.data.num_x = num_ents
    config.deviations = (*_DEFAULT.VISIBILITY_DEVIATIONS, *_DEFAULT.CPU_SCALE_DEVIATIONS)
    return _DEFAULT.shrink(config) if args["tiny"] else config
  # Fractions and seeds are unpublished: the model-size sweep's.
  sweep = study_settings.model_size("cvdb", "pythia-1b")
  config = blocks.study_define(
    study_settings.data_amount(num_ents),
    data=dict(fractions=dict(study_settings.NO_D3), num_entities=num_ents),
    **blocks.published_seeds(sweep),
  )
  return blocks.shrink_for_tests(config) if args["tiny"] else config
