r"""The main two-stage define experiment on T-REx creative works (docs/study.md §3.7, §4.7): Pythia-2.8B.

Command: (needs the T-REx dump, Pythia weights and an accelerator)
  python -m iml_jax.data.trex --trex_dir=/data/t-rex-data/original-dataset \
      --out=/data/t-rex-data/trex_subj_obj_predicate_triplets_filtered.json      # once, slow for the full dump
  python -m iml_jax.main --config=configs/trex_2stage.py --workdir=$WORKDIR \
      --config.data.trex_path=/data/t-rex-data/trex_subj_obj_predicate_triplets_filtered.json
Model-size sweep on T-REx (docs/study.md §4.7): `:model=pythia-410m` (the sweep's models as in
configs/pythia_cvdb_2stage.py): no tag 3 (690/1725/1725/690/690/690/0/690 entities), 10 x 5 seeds from 600.

Data: 6,900 works with at least 4 of the 25 creative-work predicates, chosen per seed (unlike CVDB), the main
config's fractions with tag 3 (690/1725/1725/690/552/552/552/414 entities; ours: the study does not say), `tve`
definitions, entity-association sets;
a quarter of each work's questions are test questions (test_frac 0.25; CVDB's 1/6 would leave works of 5
questions without a test question, and the stratified split fails). Block 64, 16 new tokens (§7.3).
Adafactor lr 5e-5, bf16, 10 stage-1 seeds x 3 stage-2 seeds (§7.4). Ours, as the study does not say: the
main config's 20 + 10 epochs, batch 256 (128 x 2) and start seed 600 (the run lists them as project choices).
Hardware: one 80 GB accelerator per seed (not timed here).
Study's result: IML on T-REx as on CVDB, growing with model size (qualitative; no number published, §11.4).
Argument `passes=1` (TPU slices): each step's batch in one pass, the same update with the weights gathered once a
step (config_blocks.in_passes; docs/performance.md, "The study step compiled for a TPU").
Argument `tiny` (tests): a tiny from-scratch model on 60 works of `data.trex_path`, one seed, one epoch per stage.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(model="", tiny=False, passes=0), "configs/trex_2stage.py")
  if args["model"]:
    config = blocks.model_size_sweep(args["model"], "trex")
  else:
    config = blocks.study_define(study_settings.trex_main())
  config = blocks.in_passes(config, args["passes"])
  return blocks.shrink_for_tests(config) if args["tiny"] else config
