"""The model table: every `model.name` builds, runs and is recognised from its model and config; every family's
options and pretrained shapes are fields of its config, and each pretrained shape is the model it names."""

import dataclasses

import jax
import numpy as np
import pytest

from iml_jax import config_blocks
from iml_jax.models import registry
from iml_jax.models.families import FAMILIES, PRETRAINED

TINY = {
  "tokens": dict(vocab_size=12, d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=8),
  "seq2seq": dict(vocab_size=12, d_model=8, d_kv=4, d_ff=16, n_heads=2, n_layers=1),
  "convnet": dict(image_height=9, image_width=9, features=(2,), hidden=4),
  "mlp": dict(in_features=3, out_features=2, hidden=4, n_layers=1),
}


@pytest.mark.parametrize("name", registry.MODELS)
def test_every_model_name_builds_and_is_recognised_from_its_model_and_config(name):
  spec = registry.SPECS[name]
  fields = TINY.get(name) or TINY[spec.inputs]
  if spec.family:  # the family's architecture on top of the tiny shape
    fields = {
      **{k: v for k, v in spec.family.options.items() if k not in TINY["seq2seq"] and k not in ("local_layers",)},
      **fields,
    }
  cfg = registry.make_config(name, **fields)
  model = registry.build(cfg)
  assert registry.name_of(cfg) == name and registry.spec_of(model) is spec and registry.spec_of(cfg) is spec
  assert jax.tree.leaves(registry.abstract_params(model))  # the spec's init, traced without allocating
  assert (spec.predict is None) == (spec.inputs != "arrays") == (spec.generate is not None)


def test_every_family_option_and_pretrained_shape_is_a_field_of_its_config():
  for name, family in FAMILIES.items():
    fields = set(registry.config_fields(name))
    assert set(family.options) <= fields, name
    for key, (_, shape) in family.pretrained.items():
      assert set(shape) <= fields and set(shape) >= set(registry.SPECS[name].shape_fields) - {
        "n_kv_heads",
        "n_decoder_layers",
      }, key


@pytest.mark.parametrize(
  "key,billions",
  [("pythia-70m", 0.070), ("gpt-neo-125M", 0.125), ("gpt-j-6b", 6.0), ("llama-2-7b", 6.7), ("t5-3b", 2.9)],
)
def test_a_pretrained_shape_is_the_model_it_names(key, billions):
  """Parameter counts (abstract: nothing is allocated) with the hub model's vocabulary; GPT-J's 6.05B is
  "6B", Pythia's names count from 70M, Llama-2-7B has 6.74B."""
  vocab = {"gpt_neox": 50304, "gpt_neo": 50257, "gptj": 50400, "llama": 32000, "t5": 32128}
  config = config_blocks.pretrained(key)
  family = PRETRAINED[key][0]
  fields = {k: v for k, v in config.items() if k in registry.config_fields(family)}
  cfg = registry.make_config(family, **{**fields, "vocab_size": vocab[family], "max_len": 2048})
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(registry.abstract_params(registry.build(cfg))))
  assert count / 1e9 == pytest.approx(billions, rel=0.1)


def test_the_family_options_are_the_decoder_defaults_a_config_starts_from():
  model = config_blocks.language_model("gpt_neo")
  assert model.local_layers == tuple(range(1, 12, 2)) and model.position_embedding == "learned"
  assert config_blocks.language_model("t5").embedding_init_std == 1.0
  assert dataclasses.is_dataclass(registry.make_config("gpt2", vocab_size=8, max_len=8))
