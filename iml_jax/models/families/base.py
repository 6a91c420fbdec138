"""What every model family module defines, and the weight-mapping rules they share.

A `Rule` ties one Hugging Face tensor to one or more of our parameters (NeoX and GPT-2 fuse q, k, v into one
tensor; we keep them apart). `split` goes HF → ours on NumPy arrays; `join(xp, *ours)` goes back and also runs
under `jax.eval_shape` to say which HF shape a config implies.

This module and the family modules import neither JAX nor Flax: reading the study's model table
(`families.PRETRAINED`) stays cheap for the reporting modules.
"""

import dataclasses
from typing import Any, Callable

import numpy as np

from iml_jax.errors import IMLError

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Rule:
  hf_key: str
  paths: tuple[Path, ...]
  split: Callable[[np.ndarray], tuple]
  join: Callable[..., Any]


def _unchanged(cfg, keys):
  return cfg


@dataclasses.dataclass(frozen=True)
class Family:
  """One model family: its `model.name` (= the HF `model_type`), the architecture fields a config of that name
  starts from (`options`, shaped as the family's smallest model), the study's pretrained models of the family
  (`pretrained`: key → (hub id, shape fields)), and the map between our config and parameters and a Hugging
  Face checkpoint's config.json and tensors."""

  name: str
  architecture: str  # config.json's `architectures` entry
  options: dict
  pretrained: dict[str, tuple[str, dict]]
  config_from_hf: Callable[[dict, str], dict]  # (config.json, where it was read) -> our config's fields
  config_to_hf: Callable[[Any], dict]
  rules: Callable[[Any], list[Rule]]
  # The config as the checkpoint's tensor names refine it (T5: is the head stored on its own?).
  fit_to_weights: Callable[[Any, set], Any] = _unchanged


def same(path: Path, key: str) -> Rule:
  return Rule(key, (path,), lambda w: (w,), lambda xp, w: w)


def linear(path: Path, key: str) -> Rule:
  """A torch `nn.Linear` weight [out, in] ↔ a Flax kernel [in, out]."""
  return Rule(key, (path,), lambda w: (w.T,), lambda xp, w: w.T)


def norm_rules(path: Path, key: str, with_bias: bool = True) -> list[Rule]:
  rules = [same(path + ("scale",), f"{key}.weight")]
  return rules + [same(path + ("bias",), f"{key}.bias")] if with_bias else rules


def dense_rules(path: Path, key: str, with_bias: bool, conv1d: bool = False) -> list[Rule]:
  rules = [(same if conv1d else linear)(path + ("kernel",), f"{key}.weight")]
  return rules + [same(path + ("bias",), f"{key}.bias")] if with_bias else rules


def rope(hf: dict) -> tuple[float, float]:
  """(theta, partial factor) from transformers 5's `rope_parameters` or the older top-level fields."""
  parameters = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  if parameters.get("rope_type", "default") != "default":
    raise IMLError(f"rope type {parameters['rope_type']!r} is not supported; expected 'default'")
  theta = parameters.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0)))
  return theta, parameters.get("partial_rotary_factor", hf.get("rotary_pct", hf.get("partial_rotary_factor", 1.0)))


def expect(hf: dict, field: str, allowed, where: str, default=None) -> None:
  value = hf.get(field, default)
  if value not in allowed:
    raise IMLError(f"{where}: {field} = {value!r} is not supported; expected one of {list(allowed)}")
