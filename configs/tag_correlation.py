r"""Tag–consistency correlation α (STUDY.md §4.5): how reliably tag 1 marks consistent definitions.

Command: (needs the CVDB file, the model's weights and an accelerator)
  for a in 0.5 0.6 0.7 0.8 0.9 0.95; do
    python -m iml_jax.main --config=configs/tag_correlation.py:alpha=$a --workdir=$RUNS/alpha_$a \
        --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv; done

Within each 0.25 budget qd1consis : qd1incons = qd2incons : qd2consis = α : 1 − α (α = 0.8: .2/.05/.05/.2).
Pythia-2.8B (default): with tag 3 (.08/.08/.08/.06), 10 seeds from 600 (α = 0.95: 20 from 630; α = 0.6: from
610) x 3; `model=pythia-1b`: α up to 0.975, no tag 3; `kb=trex`: T-REx (the study ran α 0.6, 0.7, 0.95).
Training as the main config (20 + 10 epochs, batch 256, Adafactor 5e-5). Hardware: one 80 GB accelerator per seed.
Study's result (qualitative, §11.4): no IML at α = 0.5; at α = 0.95 models rely on tags more than on consistency.
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.
"""
from iml_jax import config_defaults as cd


def get_config(arg: str | None = None):
  args = cd.parse_arg(arg)
  cd.check_arg(args, ("alpha", "model", "kb", "tiny"), "configs/tag_correlation.py")
  alpha = float(args.get("alpha") or 0.8)
  model = cd.pretrained_arg(args, "pythia-2.8b", ("pythia-2.8b", "pythia-1b"))
  with_d3 = args.get("model", "pythia-2.8b") == "pythia-2.8b"
  config = cd.study_define(model, args.get("kb") or "cvdb", n_seeds=20 if alpha == 0.95 else 10, n_seeds_stage2=3,
                           fractions=cd.alpha_fractions(alpha, with_d3))
  config.seed = {0.95: 630, 0.6: 610}.get(alpha, 600)
  return cd.shrink_for_tests(config) if "tiny" in args else config
