r"""The main two-stage define experiment on T-REx creative works (STUDY.md §3.7, §4.7): Pythia-2.8B.

Command: (needs the T-REx dump, Pythia weights and an accelerator)
  python -m iml_jax.data.trex --trex_dir=/data/t-rex-data/original-dataset \
      --out=/data/t-rex-data/trex_subj_obj_predicate_triplets_filtered.json      # once, slow for the full dump
  python -m iml_jax.main --config=configs/trex_2stage.py --workdir=$WORKDIR \
      --config.data.trex_path=/data/t-rex-data/trex_subj_obj_predicate_triplets_filtered.json
Model-size sweep on T-REx: `:model=pythia-410m` (any key of config_defaults.PRETRAINED).

Data: 6,900 works with at least 4 of the 25 creative-work predicates, chosen per seed (unlike CVDB), the main
config's fractions (690/1725/1725/690/552/552/552/414 entities), `tve` definitions, entity-association sets.
Training as configs/pythia_cvdb_2stage.py: 20 + 10 epochs, batch 256 (128 x 2), Adafactor lr 5e-5, bf16,
20 stage-1 seeds from 600 x 5 stage-2 seeds. Hardware: one 80 GB accelerator per seed (not timed here).
Study's result: IML on T-REx as on CVDB, growing with model size (qualitative; no number published, §11.4).
Argument `tiny` (tests): a tiny from-scratch model on 60 works of `data.trex_path`, one seed, one epoch per stage.
"""
from iml_jax import config_defaults as cd


def get_config(arg: str | None = None):
  args = cd.parse_arg(arg)
  cd.check_arg(args, ("model", "tiny"), "configs/trex_2stage.py")
  config = cd.study_define(cd.pretrained(args.get("model") or "pythia-2.8b", dtype="bfloat16"), "trex")
  return cd.shrink_for_tests(config) if "tiny" in args else config
