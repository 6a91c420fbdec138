"""The model a run trains, from its config: the fields a model config takes, the Hugging Face checkpoint it may
start from, and the vocabulary padded for sharding."""

import dataclasses
import math

from iml_jax import hf_import
from iml_jax.errors import IMLError
from iml_jax.models import registry


def model_fields(config) -> dict:
  """The model config's fields that `config.model` sets (a token model's `max_len` is the data's block size)."""
  fields = {
    k: v for k, v in config.model.items() if k not in ("name", "init_from", "allow_pickle_weights", "vocab_multiple")
  }
  return fields if array_inputs(config) else {**fields, "max_len": config.data.block_size}


def array_inputs(config) -> bool:
  """Whether the model reads arrays (an image or feature model), not tokens."""
  return registry.SPECS[config.model.name].inputs == "arrays"


def input_fields(config, vocab_size: int) -> dict:
  """What the data fixes about a model's input and output: the vocabulary size, an image model's image shape,
  or the toy regressor's feature and output sizes."""
  if config.model.name == "convnet":
    from iml_jax.data.vision import image_shape

    height, width = image_shape(config.data)
    return {"image_height": height, "image_width": width}
  if config.model.name == "mlp":
    from iml_jax.data import toy1d

    return {"in_features": toy1d.feature_size(config.data), "out_features": toy1d.output_size(config.data)}
  return {"vocab_size": vocab_size}


def pretrained_model(config) -> tuple[str | None, object]:
  """(local folder, model config) of the Hugging Face model `model.init_from` names; (None, None) if none."""
  if not config.model.init_from:
    return None, None
  folder = hf_import.resolve_model_folder(config.model.init_from)
  family, pretrained = hf_import.read_config(folder)
  if family.name != config.model.name:
    raise IMLError(
      f"config field model.name = {config.model.name!r}, but {folder}/config.json holds a {family.name!r} model"
    )
  hf_import.check_matches(pretrained, model_fields(config), folder)
  return folder, pretrained


def padded_vocab_size(config, rows: int) -> int:
  """`rows` rounded up to a multiple of `model.vocab_multiple` and of the mesh's tensor axis (which splits
  the vocabulary); a tensor size of -1 is only known on the devices, where `check_layout` checks it."""
  multiple = math.lcm(config.model.vocab_multiple, max(int(config.mesh.shape[2]), 1))
  return -(-rows // multiple) * multiple


def model_config(config, tokenizer, pretrained, folder: str | None):
  """The model a run trains: from the config's fields (from scratch) or the pretrained checkpoint's, its
  vocabulary padded for sharding (`valid_vocab` = the real rows)."""
  if array_inputs(config):
    return registry.make_config(config.model.name, **input_fields(config, 0), **model_fields(config))
  if pretrained is None:
    cfg = registry.make_config(config.model.name, vocab_size=tokenizer.vocab_size, **model_fields(config))
  elif tokenizer.vocab_size > pretrained.vocab_size:
    raise IMLError(
      f"the tokenizer in {folder} has {tokenizer.vocab_size} tokens, but the model's embedding has only "
      f"{pretrained.vocab_size} rows"
    )
  else:
    cfg = dataclasses.replace(pretrained, dtype=config.model.dtype)
  rows = padded_vocab_size(config, cfg.vocab_size)
  return dataclasses.replace(cfg, vocab_size=rows, valid_vocab=cfg.vocab_size) if rows != cfg.vocab_size else cfg
