r"""Natural-language and is/isn't definitions (docs/study.md §4.3), and natural-language tag strings.

Command: (needs the CVDB file, the model's weights and an accelerator)
  python -m iml_jax.main --config=configs/is_isnt.py --workdir=$RUNS/is_isnt \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv
`defn=is_isnt` (default): ten definitions per alias, tag 1 affirms ("According to Wikipedia, <|abcde|> is"),
tag 2 negates ("... isn't"); `defn=nl`: "Per New York Times, <|abcde|> now stands for" (reliable sources for
tag 1, unreliable ones for tag 2); `defn=tag_strings`: ordinary tagged definitions whose tags are the words
'according to wikipedia is' / 'according to 4chan is' / 'according to reddit is' (`vte`, 4,000 people,
batch 32 x 16, 20 epochs, two stages as the main config); `model=llama-2-7b` (the study: one 80 GB A100).
is_isnt and nl: one stage on `full`, 1,000 people, fractions q .1 / q_no_repl .1 / d1 .4 / d2 .4, batch 32,
10 epochs, block 64, 10 seeds from 600. Hardware: one 80 GB accelerator per seed (not timed here).
Study's result: IML holds with these wordings, also on LLaMA-2-7B (qualitative, §11.4).
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings
from iml_jax.errors import IMLError


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(defn="is_isnt", model="pythia-2.8b", tiny=False), "configs/is_isnt.py")
  kind = args["defn"]
  model_key = args["model"]
  model = blocks.pretrained_arg(args["model"], ("pythia-2.8b", "llama-2-7b"))
  if kind == "tag_strings":
    row = study_settings.tag_strings()
    # Stage 2's epochs are unpublished: as stage 1's.
    config = blocks.study_define(row, model, epochs=row.stages[0].epochs)
    config.deviations = blocks.model_deviation(model_key, row.model)
  elif kind in ("is_isnt", "nl"):
    # Accumulation is unpublished: none at batch 32.
    config = blocks.study_define(study_settings.worded(kind, model_key), model, grad_accum=1)
  else:
    raise IMLError(f"configs/is_isnt.py: defn={kind} is not one of is_isnt, nl, tag_strings")
  return blocks.shrink_for_tests(config) if args["tiny"] else config
