"""Hugging Face checkpoint folders (config.json + safetensors) ↔ our Flax parameters, without torch.

GPT-NeoX (Pythia) first; other families add a key table and a config reader. Pickle checkpoints
(`*.bin`) are refused unless `allow_pickle` — loading them runs arbitrary code.
"""
import json
import os

import numpy as np
from safetensors.numpy import load_file, save_file

from iml_jax.errors import IMLError
from iml_jax.io_utils import atomic_write_json
from iml_jax.models.gpt_neox import GPTNeoXConfig

# (our parameter path, HF key; "{i}" = layer index, transposed (HF Linear stores [out, in])).
_NEOX_GLOBAL = [(("embed_in", "embedding"), "gpt_neox.embed_in.weight", False),
                (("final_layer_norm", "scale"), "gpt_neox.final_layer_norm.weight", False),
                (("final_layer_norm", "bias"), "gpt_neox.final_layer_norm.bias", False),
                (("embed_out", "kernel"), "embed_out.weight", True)]
_NEOX_LAYER = [(("input_layernorm", "scale"), "input_layernorm.weight", False),
               (("input_layernorm", "bias"), "input_layernorm.bias", False),
               (("post_attention_layernorm", "scale"), "post_attention_layernorm.weight", False),
               (("post_attention_layernorm", "bias"), "post_attention_layernorm.bias", False),
               (("attention", "query_key_value", "kernel"), "attention.query_key_value.weight", True),
               (("attention", "query_key_value", "bias"), "attention.query_key_value.bias", False),
               (("attention", "dense", "kernel"), "attention.dense.weight", True),
               (("attention", "dense", "bias"), "attention.dense.bias", False),
               (("mlp", "dense_h_to_4h", "kernel"), "mlp.dense_h_to_4h.weight", True),
               (("mlp", "dense_h_to_4h", "bias"), "mlp.dense_h_to_4h.bias", False),
               (("mlp", "dense_4h_to_h", "kernel"), "mlp.dense_4h_to_h.weight", True),
               (("mlp", "dense_4h_to_h", "bias"), "mlp.dense_4h_to_h.bias", False)]


def _key_table(n_layers: int):
  table = list(_NEOX_GLOBAL)
  for i in range(n_layers):
    table += [((f"layers_{i}",) + path, f"gpt_neox.layers.{i}.{key}", t) for path, key, t in _NEOX_LAYER]
  return table


def neox_config_from_hf(hf: dict, folder: str) -> GPTNeoXConfig:
  """Reads both spellings: hub Pythia (`rotary_pct`, `rotary_emb_base`) and transformers 5 (`rope_parameters`)."""
  if hf.get("model_type") != "gpt_neox":
    raise IMLError(f"{folder}/config.json: model_type {hf.get('model_type')!r} is not supported; expected 'gpt_neox'")
  if hf.get("hidden_act", "gelu") != "gelu":
    raise IMLError(f"{folder}/config.json: hidden_act {hf['hidden_act']!r} is not supported; expected 'gelu'")
  rope = hf.get("rope_parameters") or {}
  return GPTNeoXConfig(
      vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
      n_heads=hf["num_attention_heads"], d_mlp=hf["intermediate_size"], max_len=hf["max_position_embeddings"],
      rotary_pct=rope.get("partial_rotary_factor", hf.get("rotary_pct", 0.25)),
      rotary_base=rope.get("rope_theta", hf.get("rotary_emb_base", 10000.0)),
      parallel_residual=hf.get("use_parallel_residual", True), layer_norm_eps=hf.get("layer_norm_eps", 1e-5))


def resolve_model_folder(init_from: str) -> str:
  """A local folder as it is; otherwise a hub id, downloaded (safetensors, config, tokenizer) when online."""
  if os.path.isdir(init_from):
    return init_from
  try:
    from huggingface_hub import snapshot_download
    return snapshot_download(init_from, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
  except Exception as err:  # offline, unknown id, gated model: the library raises many types
    raise IMLError(f"config field model.init_from = {init_from!r}: no such local folder, and downloading it from "
                   f"the Hugging Face hub failed ({type(err).__name__}). Offline, download the model elsewhere "
                   "and point model.init_from at the folder holding its config.json and *.safetensors") from None


def read_gpt_neox_config(folder: str) -> GPTNeoXConfig:
  config_path = os.path.join(folder, "config.json")
  if not os.path.exists(config_path):
    raise IMLError(f"{config_path} does not exist: expected a Hugging Face model folder (config.json + safetensors)")
  return neox_config_from_hf(json.load(open(config_path)), folder)


def check_matches(cfg: GPTNeoXConfig, fields: dict, folder: str) -> None:
  """The run config's model shape must describe the checkpoint it starts from."""
  for name in ("d_model", "n_layers", "n_heads", "d_mlp"):
    if fields[name] != getattr(cfg, name):
      raise IMLError(f"config field model.{name} = {fields[name]}, but {folder}/config.json has {getattr(cfg, name)}")


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
      weights.update(load_file(os.path.join(folder, name)))
    return weights
  if os.path.exists(single):
    return load_file(single)
  pickles = [f for f in os.listdir(folder) if f.endswith(".bin")]
  if pickles and not allow_pickle:
    raise IMLError(f"{folder} holds only pickle weights ({pickles[0]}); loading them can run arbitrary code. "
                   "Convert them to safetensors, or opt in with allow_pickle")
  if pickles:
    import torch  # only for an explicit opt-in
    weights = {}
    for name in sorted(pickles):
      weights.update({k: v.float().numpy() for k, v in torch.load(os.path.join(folder, name), weights_only=True).items()})
    return weights
  raise IMLError(f"{folder} has no model.safetensors, model.safetensors.index.json or *.bin weights")


def load_hf_gpt_neox(folder: str, allow_pickle: bool = False) -> tuple[GPTNeoXConfig, dict]:
  """(model config, float32 params) from a local Hugging Face GPT-NeoX folder."""
  cfg = read_gpt_neox_config(folder)
  weights = _read_weights(folder, allow_pickle)
  head = cfg.d_model // cfg.n_heads
  expected_shapes = {"gpt_neox.embed_in.weight": (cfg.vocab_size, cfg.d_model),
                     "embed_out.weight": (cfg.vocab_size, cfg.d_model),
                     "gpt_neox.layers.0.attention.query_key_value.weight": (3 * cfg.n_heads * head, cfg.d_model),
                     "gpt_neox.layers.0.mlp.dense_h_to_4h.weight": (cfg.d_mlp, cfg.d_model)}
  params: dict = {}
  for path, key, transposed in _key_table(cfg.n_layers):
    if key not in weights:
      raise IMLError(f"{folder}: weight {key} is missing")
    value = weights[key].astype(np.float32)
    if key in expected_shapes and value.shape != expected_shapes[key]:
      raise IMLError(f"{folder}: weight {key} has shape {value.shape}, config.json implies {expected_shapes[key]}")
    node = params
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = value.T if transposed else value
  return cfg, params


def export_hf_gpt_neox(folder: str, cfg: GPTNeoXConfig, params) -> None:
  """Writes a folder that `transformers.GPTNeoXForCausalLM.from_pretrained` loads."""
  os.makedirs(folder, exist_ok=True)
  tensors = {}
  for path, key, transposed in _key_table(cfg.n_layers):
    value = params
    for name in path:
      value = value[name]
    value = np.asarray(value, dtype=np.float32)
    tensors[key] = np.ascontiguousarray(value.T if transposed else value)
  tmp = os.path.join(folder, ".model.safetensors.tmp")
  save_file(tensors, tmp, metadata={"format": "pt"})
  os.replace(tmp, os.path.join(folder, "model.safetensors"))
  atomic_write_json(os.path.join(folder, "config.json"), {
      "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
      "intermediate_size": cfg.d_mlp, "max_position_embeddings": cfg.max_len, "hidden_act": "gelu",
      "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base,
                          "partial_rotary_factor": cfg.rotary_pct},
      "rotary_pct": cfg.rotary_pct, "rotary_emb_base": cfg.rotary_base,
      "use_parallel_residual": cfg.parallel_residual, "layer_norm_eps": cfg.layer_norm_eps,
      "tie_word_embeddings": False, "attention_bias": True})
