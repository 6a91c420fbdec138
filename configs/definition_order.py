r"""Definition word order (docs/study.md §4.1): the six orders of tag (T), alias (A, code "v") and entity (E).

Command: (needs the CVDB file, the model's weights and an accelerator)
  for order in tve tev vte vet etv evt; do
    python -m iml_jax.main --config=configs/definition_order.py:order=$order --workdir=$RUNS/order_$order \
        --config.data.cvdb_path=/data/cvdb/cross-verified-database.csv; done
Code order tve/tev/vte/vet/etv/evt = paper TAE/TEA/ATE/AET/ETA/EAT. `model=t5-3b` runs the T5 version.

As configs/pythia_cvdb_2stage.py (Pythia-2.8B on CVDB, 20 + 10 epochs, batch 256) with seeds from 700:
20 x 3 (vte: 10 x 3); T5-3B: batch 64 x 4, label block 8, 3 stage-2 seeds (its start seed and stage-1 seed
count are not published: ours are 700 and 10). Hardware: one 80 GB accelerator per seed.
Study's result (qualitative, §11.4): word order matters; TAE works, EAT/ATE reportedly degrade (unverified).
Argument `passes=1` (TPU slices): each step's batch in one pass, the same update with the weights gathered once a
step (config_blocks.in_passes; docs/performance.md, "The study step compiled for a TPU").
Argument `tiny` (tests): a tiny from-scratch model on the synthetic knowledge base.
"""

from iml_jax import config_blocks as blocks
from iml_jax import study_settings
from iml_jax.data.define import DEF_ORDERS
from iml_jax.errors import IMLError


def get_config(arg: str | None = None):
  args = blocks.parse_arg(
    arg, dict(order="tve", model="pythia-2.8b", tiny=False, passes=0), "configs/definition_order.py"
  )
  order = args["order"]
  if order not in DEF_ORDERS:
    raise IMLError(f"configs/definition_order.py: order={order} is not one of {DEF_ORDERS}")
  model = blocks.pretrained_arg(args["model"], ("pythia-2.8b", "t5-3b"))
  unpublished = {}
  if args["model"] == "t5-3b":  # T5's start seed is not published: the Pythia runs' for the same order
    unpublished["seed"] = study_settings.definition_order(order).fields["seed"]
  config = blocks.study_define(study_settings.definition_order(order, args["model"]), model, **unpublished)
  config = blocks.in_passes(config, args["passes"])
  return blocks.shrink_for_tests(config) if args["tiny"] else config
