"""The model a run trains, from its specs (specs.Model, the task's data, specs.Mesh): the fields a model config
takes, the Hugging Face checkpoint it may start from, and the vocabulary padded for sharding."""

import dataclasses
import math

from iml_jax import hf_import
from iml_jax.errors import IMLError
from iml_jax.models import registry


def array_inputs(model) -> bool:
  """Whether the model reads arrays (an image or feature model), not tokens."""
  return registry.SPECS[model.name].inputs == "arrays"


def model_fields(model, data) -> dict:
  """The model config's fields that `model.fields` sets (a token model's `max_len` is the data's block size)."""
  return dict(model.fields) if array_inputs(model) else {**model.fields, "max_len": data.block_size}


def input_fields(model, data, vocab_size: int) -> dict:
  """What the data fixes about a model's input and output: the vocabulary size, an image model's image shape,
  or the toy regressor's feature and output sizes."""
  if model.name == "convnet":
    from iml_jax.data.vision import image_shape

    height, width = image_shape(data)
    return {"image_height": height, "image_width": width}
  if model.name == "mlp":
    from iml_jax.data import toy1d

    return {"in_features": toy1d.feature_size(data), "out_features": toy1d.output_size(data)}
  return {"vocab_size": vocab_size}


def pretrained_model(model, data) -> tuple[str | None, object]:
  """(local folder, model config) of the Hugging Face model `model.init_from` names; (None, None) if none."""
  if not model.init_from:
    return None, None
  folder = hf_import.resolve_model_folder(model.init_from)
  family, pretrained = hf_import.read_config(folder)
  if family.name != model.name:
    raise IMLError(f"config field model.name = {model.name!r}, but {folder}/config.json holds a {family.name!r} model")
  hf_import.check_matches(pretrained, model_fields(model, data), folder)
  return folder, pretrained


def padded_vocab_size(model, mesh, rows: int) -> int:
  """`rows` rounded up to a multiple of `model.vocab_multiple` and of the mesh's tensor axis (which splits
  the vocabulary); a tensor size of -1 is only known on the devices, where `check_layout` checks it."""
  multiple = math.lcm(model.vocab_multiple, max(int(mesh.shape[2]), 1))
  return -(-rows // multiple) * multiple


def model_config(model, data, mesh, tokenizer, pretrained, folder: str | None):
  """The model a run trains: from the config's fields (from scratch) or the pretrained checkpoint's, its
  vocabulary padded for sharding (`valid_vocab` = the real rows)."""
  if array_inputs(model):
    return registry.make_config(model.name, **input_fields(model, data, 0), **model_fields(model, data))
  if pretrained is None:
    cfg = registry.make_config(model.name, vocab_size=tokenizer.vocab_size, **model_fields(model, data))
  elif tokenizer.vocab_size > pretrained.vocab_size:
    raise IMLError(
      f"the tokenizer in {folder} has {tokenizer.vocab_size} tokens, but the model's embedding has only "
      f"{pretrained.vocab_size} rows"
    )
  else:
    cfg = dataclasses.replace(pretrained, dtype=model.dtype)
  rows = padded_vocab_size(model, mesh, cfg.vocab_size)
  return dataclasses.replace(cfg, vocab_size=rows, valid_vocab=cfg.vocab_size) if rows != cfg.vocab_size else cfg
