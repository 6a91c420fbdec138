"""The language-model families, one module each: the architecture fields a config of that `model.name` starts
from, the study's pretrained models of the family (hub id and shape), and the map to and from Hugging Face
checkpoints. `models/registry.py` pairs each family with the Flax model that runs it."""

from iml_jax.models.families import gpt2, gpt_neo, gpt_neox, gptj, llama, t5
from iml_jax.models.families.base import Family

FAMILIES: dict[str, Family] = {m.FAMILY.name: m.FAMILY for m in (gpt_neox, gpt_neo, gptj, gpt2, llama, t5)}
# The study's pretrained models by key (`model=<key>` in a study config; docs/study.md §7.1):
# (family, Hugging Face hub id, shape fields of our config).
PRETRAINED: dict[str, tuple[str, str, dict]] = {
  key: (family.name, hub_id, shape)
  for family in FAMILIES.values()
  for key, (hub_id, shape) in family.pretrained.items()
}
# The embedding rows of each pretrained model's hub checkpoint (its config.json's `vocab_size`): what a plan made
# without the weights at hand (`tpu_plan`) sizes the model by.
HUB_VOCAB_SIZES: dict[str, int] = {
  **{key: 50304 for key in PRETRAINED if key.startswith("pythia-")},
  "pythia-6.9b": 50432,
  **{key: 50257 for key in PRETRAINED if key.startswith(("gpt-neo-", "gpt2"))},
  "gpt-j-6b": 50400,
  "llama-2-7b": 32000,
  **{key: 32128 for key in PRETRAINED if key.startswith("t5-")},
}
