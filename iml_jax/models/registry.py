"""Model families by config name: which config class and module build them, and how they train."""
import dataclasses

import flax.linen as nn
import jax
import numpy as np

from iml_jax.models import convnet, decoder, mlp, t5
from iml_jax.models.convnet import ConvNet, ConvNetConfig
from iml_jax.models.mlp import MLP, MLPConfig
from iml_jax.models.decoder import DecoderConfig, DecoderLM
from iml_jax.models.t5 import T5, T5Config

DECODER_FAMILIES = ("gpt_neox", "gpt2", "gpt_neo", "gptj", "llama")
MODELS = DECODER_FAMILIES + ("t5", "convnet", "mlp")
# The fields a run config must agree on with a checkpoint it starts from.
SHAPE_FIELDS = {DecoderConfig: ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_mlp"),
                T5Config: ("d_model", "d_kv", "d_ff", "n_heads", "n_layers", "n_decoder_layers")}


def config_class(name: str) -> type:
  return {"t5": T5Config, "convnet": ConvNetConfig, "mlp": MLPConfig}.get(name, DecoderConfig)


def make_config(name: str, **fields):
  if name in DECODER_FAMILIES:
    fields["family"] = name
  return config_class(name)(**fields)


def family_of(cfg) -> str:
  return {T5Config: "t5", ConvNetConfig: "convnet", MLPConfig: "mlp"}.get(type(cfg)) or cfg.family


def build(cfg) -> nn.Module:
  return {T5Config: T5, ConvNetConfig: ConvNet, MLPConfig: MLP}.get(type(cfg), DecoderLM)(cfg)


def config_fields(cls: type) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(cls))


def _module(model: nn.Module):
  if model.reads_arrays:
    return mlp if isinstance(model, MLP) else convnet
  return t5 if model.is_seq2seq else decoder


def init_params(model: nn.Module, rng: jax.Array):
  return _module(model).init_params(model, rng)


def token_losses(model: nn.Module, params, batch: dict) -> jax.Array:
  return _module(model).token_losses(model, params, batch)


def predict(model: nn.Module, params, inputs) -> jax.Array:
  """An array model's predictions for a batch of inputs (classes or values)."""
  return _module(model).predict(model, params, inputs)


def unbox(tree):
  """The arrays (or shapes) inside a tree of logically partitioned parameters."""
  return jax.tree.map(lambda x: x.unbox() if isinstance(x, nn.LogicallyPartitioned) else x, tree,
                      is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def abstract_params(model: nn.Module):
  """Unboxed parameter shapes of `model`, without allocating them."""
  return unbox(jax.eval_shape(lambda: init_params(model, jax.random.key(0))))


def hf_layout_config(cfg):
  """`cfg` as a Hugging Face checkpoint lays it out: `valid_vocab` rows, one subtree per layer."""
  if cfg.valid_vocab:
    cfg = dataclasses.replace(cfg, vocab_size=cfg.valid_vocab, valid_vocab=0)
  return dataclasses.replace(cfg, scan_layers=False) if getattr(cfg, "scan_layers", False) else cfg


def to_layout(params, abstract):
  """Host arrays of `params` laid out as `abstract`: per-layer subtrees `layers_<i>` stacked into `layers`
  (scanned) or split out of it, and vocabulary rows added (zeros) or removed. Only these may differ."""
  params = dict(jax.device_get(params))
  if "layers" in abstract and "layers" not in params:
    count = sum(key.startswith("layers_") for key in params)
    params["layers"] = jax.tree.map(lambda *xs: np.stack(xs), *[params.pop(f"layers_{i}") for i in range(count)])
  elif "layers" in params and "layers" not in abstract:
    stacked = params.pop("layers")
    count = len(jax.tree.leaves(stacked)[0])
    params.update({f"layers_{i}": jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(count)})

  def fit(x, target):
    x = np.asarray(x)
    x = x[tuple(slice(0, n) for n in target.shape)]
    return np.pad(x, [(0, n - m) for m, n in zip(x.shape, target.shape)])
  return jax.tree.map(fit, params, abstract)
