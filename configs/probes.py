r"""Linear probes for "selective retrieval" (docs/study.md §10): can the tag an alias was defined with in
Stage 1 be read from the hidden states while the model reads "What is the name of <alias>?"

The study probes the Stage-1 checkpoint of Pythia-1B-deduped (CVDB, 4,000 entities, seed 600, d3 fractions,
entity-association test sets) for two definition orders; `order=tve` (tag–alias–entity, "TAE", the
default) or `order=vte` (alias–tag–entity, "ATE"). Classes: the "name" questions of aliases defined with
tag 1 (qd1consis) vs tag 2 (qd2incons), one question per alias, equal class sizes (chance 0.5).

Command: (needs the CVDB file, Pythia-1B weights and an accelerator for the training run)
  python -m iml_jax.main --config=configs/probes.py:order=vte --workdir=$RUNS/probes_vte \
      --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv
  python -m iml_jax.analyze --workdir=$RUNS/probes_vte --analysis=probes  # the config the run saved
Study's result (poster, Pythia-1B, 16 layers): ATE (vte) ≈ 0.8–1.0 accuracy from the alias's last tokens
onwards in layers ≥ 8; TAE (tve) ≈ 0.5 everywhere, although IML is present for TAE.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings
from iml_jax.errors import IMLError


def get_config(arg: str | None = None):
  args = blocks.parse_arg(arg, dict(order="tve"), "configs/probes.py")
  order = args["order"]
  if order not in ("tve", "vte"):
    raise IMLError(f"configs/probes.py: order={order!r}; expected 'tve' (TAE) or 'vte' (ATE)")
  config = blocks.study_define(study_settings.probes(order), n_seeds_stage2=1)
  config.analysis.probes.update(classes="ent_assoc_name_qd1consis,ent_assoc_name_qd2incons", stage="stage1")
  return config
