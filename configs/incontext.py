r"""In-context definitions (docs/study.md §4.2): each defined alias's questions carry its definition in the prompt.

Command: (needs the CVDB file, Pythia-2.8B weights and an accelerator)
  python -m iml_jax.main --config=configs/incontext.py --workdir=$RUNS/incontext \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv
One stage on `full`, 20 epochs, batch 256, block 72, 20 seeds from 600; the main config's fractions. Text:
`{definition}\n. Q: {question}\nA: {answer}\n` (the original's stray ". " kept, bug #20); definitions are not
trained as documents of their own; the test sets are the d1/d2/d3 questions with their definitions.
Hardware: one 80 GB accelerator per seed (not timed here). Study's result: none published (§11.4).
Argument `passes=1` (TPU slices): each step's batch in one pass, the same update with the weights gathered once a
step (config_blocks.in_passes; docs/performance.md, "The study step compiled for a TPU").
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(model="pythia-2.8b", tiny=False, passes=0), "configs/incontext.py")
  row = study_settings.incontext()
  config = blocks.study_define(row, blocks.pretrained_arg(args["model"]))
  config.deviations = blocks.model_deviation(args["model"], row.model)
  config = blocks.in_passes(config, args["passes"])
  if args["tiny"]:
    config = blocks.shrink_for_tests(config)
    config.data.block_size = 96
  return config
