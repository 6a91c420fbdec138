"""Every model a config can name, in one table: `SPECS[model.name]` says which config class and Flax module
build it, how it is initialised, trained, run and evaluated, what it reads, and (language models) its family
module in `models/families/`. The rest of the package asks this table, never the model's class."""

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from iml_jax.models import convnet, decoder, mlp, t5
from iml_jax.models.convnet import ConvNet, ConvNetConfig
from iml_jax.models.decoder import DecoderConfig, DecoderLM
from iml_jax.models.families import FAMILIES, Family
from iml_jax.models.mlp import MLP, MLPConfig
from iml_jax.models.t5 import T5, T5Config

INPUT_KINDS = ("tokens", "seq2seq", "arrays")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  config_class: type
  module_class: type  # the Flax module, built from a config
  init_params: Callable  # (model, rng) -> params
  token_losses: Callable  # (model, params, batch) -> per-position losses
  # What the model reads (model_io.py encodes and evaluates each kind): "tokens", one token sequence per
  # example (decoder-only); "seq2seq", inputs and targets (encoder–decoder); "arrays", images or features.
  inputs: str
  generate: Callable | None = None  # text models: (model, params, prompts, prompt_mask, max_new, eos) -> tokens
  hidden_states: Callable | None = None  # text models: (model, params, tokens) -> [layers, B, T, D]
  predict: Callable | None = None  # array models: (model, params, inputs) -> classes or values
  # (model) -> decoder.EmbeddingReads or None: how the loss reads the vocabulary-sized matrices, when the input
  # table only at the input tokens' rows (per-example gradients then keep them factored)
  embedding_reads: Callable = lambda model: None
  family: Family | None = None  # language models: architecture options, pretrained models, Hugging Face map
  shape_fields: tuple[str, ...] = ()  # what a run config must agree on with a checkpoint it starts from
  # (model, params, batch, weights) -> the training loss, sum of weights × per-position losses; None: from those
  weighted_loss: Callable | None = None


def _decoder_spec(family: str) -> ModelSpec:
  return ModelSpec(
    DecoderConfig,
    DecoderLM,
    decoder.init_params,
    decoder.token_losses,
    "tokens",
    decoder.generate,
    decoder.hidden_states,
    embedding_reads=decoder.embedding_reads,
    weighted_loss=decoder.weighted_loss,
    family=FAMILIES[family],
    shape_fields=("d_model", "n_layers", "n_heads", "n_kv_heads", "d_mlp"),
  )


SPECS: dict[str, ModelSpec] = {
  **{name: _decoder_spec(name) for name in FAMILIES if name != "t5"},
  "t5": ModelSpec(
    T5Config,
    T5,
    t5.init_params,
    t5.token_losses,
    "seq2seq",
    t5.generate,
    t5.hidden_states,
    family=FAMILIES["t5"],
    shape_fields=("d_model", "d_kv", "d_ff", "n_heads", "n_layers", "n_decoder_layers"),
  ),
  "convnet": ModelSpec(
    ConvNetConfig, ConvNet, convnet.init_params, convnet.token_losses, "arrays", predict=convnet.predict
  ),
  "mlp": ModelSpec(MLPConfig, MLP, mlp.init_params, mlp.token_losses, "arrays", predict=mlp.predict),
}
MODELS = tuple(SPECS)


def name_of(cfg) -> str:
  """The `model.name` of a model config."""
  if isinstance(cfg, DecoderConfig):
    return cfg.family
  return next(name for name, spec in SPECS.items() if spec.config_class is type(cfg))


def spec_of(model_or_config) -> ModelSpec:
  """The spec of a built model or of a model config."""
  return SPECS[name_of(getattr(model_or_config, "cfg", model_or_config))]


def make_config(name: str, **fields):
  if SPECS[name].config_class is DecoderConfig:
    fields["family"] = name
  return SPECS[name].config_class(**fields)


def build(cfg) -> nn.Module:
  return spec_of(cfg).module_class(cfg)


def config_fields(name: str) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(SPECS[name].config_class))


def init_params(model: nn.Module, rng: jax.Array):
  return spec_of(model).init_params(model, rng)


def token_losses(model: nn.Module, params, batch: dict) -> jax.Array:
  return spec_of(model).token_losses(model, params, batch)


def weighted_loss(model: nn.Module, params, batch: dict, weights: jax.Array) -> jax.Array:
  """The training loss: the sum of `weights` × the model's per-position losses."""
  spec = spec_of(model)
  if spec.weighted_loss:
    return spec.weighted_loss(model, params, batch, weights)
  return jnp.sum(spec.token_losses(model, params, batch) * weights)


def predict(model: nn.Module, params, inputs) -> jax.Array:
  """An array model's predictions for a batch of inputs (classes or values)."""
  return spec_of(model).predict(model, params, inputs)


def unbox(tree):
  """The arrays (or shapes) inside a tree of logically partitioned parameters."""
  return jax.tree.map(  # no sharding constraint: arrays are laid out by their shardings (train.abstract_state)
    lambda x: x.unbox(apply_constraint=False) if isinstance(x, nn.LogicallyPartitioned) else x,
    tree,
    is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned),
  )


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
