"""Hugging Face checkpoint folders (config.json + safetensors) ↔ our Flax parameters, without torch.

Families (`models/families/`): GPT-NeoX/Pythia, GPT-2, GPT-Neo, GPT-J, Llama, T5. Weights are read from
`model.safetensors` or a sharded `model.safetensors.index.json` with memory maps (bf16/fp16 → fp32).
Pickle checkpoints (`*.bin`) are refused unless `allow_pickle`: loading them runs arbitrary code.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from iml_jax.errors import IMLError
from iml_jax.models.families import FAMILIES, Family
from iml_jax.io_utils import FILE_MODE, atomic_write_json
from iml_jax.models import registry

# Fields that shape training only (initialisation, compute dtype), not the exported network.
_NOT_EXPORTED = ("init_std", "embedding_init_std", "dtype", "attention", "remat")
_SAFETENSORS_DTYPES = {
  "F64": np.float64,
  "F32": np.float32,
  "F16": np.float16,
  "BF16": ml_dtypes.bfloat16,
  "I64": np.int64,
  "I32": np.int32,
  "I16": np.int16,
  "I8": np.int8,
  "U8": np.uint8,
  "BOOL": np.bool_,
}


def resolve_model_folder(init_from: str) -> str:
  """A local folder as it is; otherwise a hub id, downloaded (safetensors, config, tokenizer) when online."""
  if os.path.isdir(init_from):
    return init_from
  if "://" in init_from:
    raise IMLError(
      f"config field model.init_from = {init_from!r}: a model is read from a local folder (memory-mapped "
      "safetensors) or a hub id; copy it first, e.g. gcloud storage cp -r URI DIR"
    )
  try:
    from huggingface_hub import snapshot_download

    return snapshot_download(init_from, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
  except Exception as err:  # offline, unknown id, gated model: the library raises many types
    raise IMLError(
      f"config field model.init_from = {init_from!r}: no such local folder, and downloading it from "
      f"the Hugging Face hub failed ({type(err).__name__}). Offline, download the model elsewhere "
      "and point model.init_from at the folder holding its config.json and *.safetensors"
    ) from None


def read_config(folder: str) -> tuple[Family, object]:
  """(family, our model config) from `folder/config.json`."""
  path = os.path.join(folder, "config.json")
  if not os.path.exists(path):
    raise IMLError(f"{path} does not exist: expected a Hugging Face model folder (config.json + safetensors)")
  try:
    hf = json.load(open(path))
  except json.JSONDecodeError as err:
    raise IMLError(f"{path} is not valid JSON ({err})") from None
  if not isinstance(hf, dict):
    raise IMLError(f"{path} holds a JSON {type(hf).__name__}; expected an object of config fields")
  family = FAMILIES.get(hf.get("model_type"))
  if family is None:
    raise IMLError(f"{path}: model_type {hf.get('model_type')!r} is not supported; expected one of {sorted(FAMILIES)}")
  try:
    cfg = registry.make_config(family.name, **family.config_from_hf(hf, path))
  except KeyError as err:
    raise IMLError(f"{path}: field {err.args[0]!r} is missing; a {family.name} config needs it") from None
  except TypeError as err:  # e.g. "hidden_size": "64" used in arithmetic while the config is built
    quoted = sorted(k for k, v in hf.items() if isinstance(v, str) and v.strip().replace(".", "", 1).isdigit())
    raise IMLError(
      f"{path}: "
      + (
        f"field(s) {quoted} hold numbers as strings; sizes must be JSON numbers"
        if quoted
        else f"a field holds a value of the wrong type ({err})"
      )
    ) from None
  _check_number_fields(cfg, path)
  return family, family.fit_to_weights(cfg, _weight_keys(folder))


_NUMBER_KINDS = {int: "an integer", "int": "an integer", float: "a number", "float": "a number"}


def _check_number_fields(cfg, path: str) -> None:
  """A size or rate that is not a number (e.g. "hidden_size": "64") is named here, not deep inside the model."""
  for field in dataclasses.fields(cfg):
    kind, value = _NUMBER_KINDS.get(field.type), getattr(cfg, field.name)
    wanted = int if kind == "an integer" else (int, float)
    if kind and (isinstance(value, bool) or not isinstance(value, wanted)):
      raise IMLError(f"{path}: it gives the model's {field.name} = {value!r}; expected {kind}")


def _weight_keys(folder: str) -> set[str]:
  """Tensor names from the index or the safetensors header, without reading any tensor."""
  index = os.path.join(folder, "model.safetensors.index.json")
  if os.path.exists(index):
    return set(json.load(open(index))["weight_map"])
  single = os.path.join(folder, "model.safetensors")
  return set(_load_safetensors(single)) if os.path.exists(single) else set()


def check_matches(cfg, fields: dict, folder: str) -> None:
  """The run config's model shape must describe the checkpoint it starts from: every differing field in one error."""
  differing = [
    f"model.{name} = {fields[name]} (it has {getattr(cfg, name)})"
    for name in registry.spec_of(cfg).shape_fields
    if name in fields and fields[name] != getattr(cfg, name)
  ]
  if differing:
    raise IMLError(f"config field(s) {', '.join(differing)} differ from {folder}/config.json; set them to its values")


def _read_weights(folder: str, allow_pickle: bool) -> dict[str, np.ndarray]:
  index = os.path.join(folder, "model.safetensors.index.json")
  single = os.path.join(folder, "model.safetensors")
  if os.path.exists(index):
    files = sorted(set(json.load(open(index))["weight_map"].values()))
    missing = [f for f in files if not os.path.exists(os.path.join(folder, f))]
    if missing:
      raise IMLError(f"{index} lists {missing[:3]}, which are missing from {folder}")
    weights = {}
    for name in files:
      weights.update(_load_safetensors(os.path.join(folder, name)))
    return weights
  if os.path.exists(single):
    return _load_safetensors(single)
  pickles = [f for f in os.listdir(folder) if f.endswith(".bin")]
  if pickles and not allow_pickle:
    raise IMLError(
      f"{folder} holds only pickle weights ({pickles[0]}); loading them can run arbitrary code. "
      "Convert them to safetensors, or opt in with --config.model.allow_pickle_weights=True "
      "(allow_pickle=True in hf_import.load_hf_model)"
    )
  if pickles:
    import torch  # only for an explicit opt-in

    weights = {}
    for name in sorted(pickles):
      state = torch.load(os.path.join(folder, name), weights_only=True)
      weights.update({k: v.float().numpy() for k, v in state.items()})
    return weights
  raise IMLError(f"{folder} has no model.safetensors, model.safetensors.index.json or *.bin weights")


def _load_safetensors(path: str) -> dict[str, np.ndarray]:
  """Memory-mapped tensors of one safetensors file (numpy cannot read bf16 through `safetensors.numpy`). The
  header's length and every tensor's extent are checked against the file's size before anything is read or mapped:
  garbage is one error naming the file, never an allocation of whatever its first 8 bytes say."""
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      header_len = int.from_bytes(f.read(8), "little")
      if size < 8 or header_len > size - 8:
        raise ValueError(f"its header claims {header_len:,} bytes, but the file has {size:,}")
      header = json.loads(f.read(header_len))
    if not isinstance(header, dict):
      raise ValueError(f"its header is a JSON {type(header).__name__}, not an object")
    tensors = {}
    for key, info in header.items():
      if key == "__metadata__":
        continue
      dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
      start, end = info["data_offsets"]
      shape = tuple(info["shape"])
      count = int(np.prod(shape, dtype=np.int64))
      if not 0 <= start <= end <= size - 8 - header_len or end - start != count * dtype.itemsize:
        raise ValueError(f"tensor {key!r} ({info['dtype']} {list(shape)}) does not fit its data_offsets {[start, end]}")
      tensors[key] = np.memmap(path, dtype, "r", offset=8 + header_len + start, shape=(count,)).reshape(shape)
    return tensors
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:  # garbage: any of these, never a crash
    raise IMLError(f"{path} is not a readable safetensors file ({type(err).__name__}: {err})") from None


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _get(tree, path: tuple[str, ...]):
  for name in path:
    tree = tree[name]
  return tree


def _leaf_names(tree) -> set[str]:
  return {jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}


def load_hf_model(folder: str, allow_pickle: bool = False) -> tuple[object, dict]:
  """(our model config, float32 params) from a local Hugging Face model folder of a supported family."""
  family, cfg = read_config(folder)
  weights = _read_weights(folder, allow_pickle)
  expected = registry.abstract_params(registry.build(cfg))
  params: dict = {}
  for rule in family.rules(cfg):
    if rule.hf_key not in weights:
      raise IMLError(f"{folder}: weight {rule.hf_key} is missing")
    value = weights[rule.hf_key]
    shapes = [jax.ShapeDtypeStruct(_get(expected, p).shape, jnp.float32) for p in rule.paths]
    implied = jax.eval_shape(lambda *xs: rule.join(jnp, *xs), *shapes).shape
    if tuple(value.shape) != tuple(implied):
      raise IMLError(
        f"{folder}: weight {rule.hf_key} has shape {tuple(value.shape)}, config.json implies {tuple(implied)}"
      )
    for path, part in zip(rule.paths, rule.split(np.asarray(value, dtype=np.float32))):
      _set(params, path, np.ascontiguousarray(part))
  unfilled = _leaf_names(expected) - _leaf_names(params)
  if unfilled:
    raise IMLError(f"{folder}: no {family.name} weight maps onto our parameters {sorted(unfilled)[:3]}")
  return cfg, params


def export_hf_model(folder: str, cfg, params) -> None:
  """Writes config.json + model.safetensors that `transformers` `from_pretrained` loads."""
  family = registry.spec_of(cfg).family
  hf_config = family.config_to_hf(cfg)
  described = registry.make_config(family.name, **family.config_from_hf(hf_config, folder))
  lost = [
    f
    for f in registry.config_fields(family.name)
    if f not in _NOT_EXPORTED and getattr(described, f) != getattr(cfg, f)
  ]
  if lost:
    raise IMLError(
      f"this {family.name} model cannot be written as a Hugging Face {family.name} "
      f"checkpoint: its fields {lost} have no {family.name} equivalent"
    )
  os.makedirs(folder, exist_ok=True)
  tensors = {}
  for rule in family.rules(cfg):
    parts = [np.asarray(_get(params, p), dtype=np.float32) for p in rule.paths]
    tensors[rule.hf_key] = np.ascontiguousarray(rule.join(np, *parts))
  tmp = os.path.join(folder, ".model.safetensors.tmp")
  save_file(tensors, tmp, metadata={"format": "pt"})
  os.chmod(tmp, FILE_MODE)  # safetensors creates it private; the other files get open()'s mode
  os.replace(tmp, os.path.join(folder, "model.safetensors"))
  atomic_write_json(
    os.path.join(folder, "config.json"),
    {"architectures": [family.architecture], "model_type": family.name, **hf_config},
  )
