"""GPT-2: learned positions, sequential residual, Conv1D weights stored [in, out]."""

import numpy as np

from iml_jax.models.families.base import Family, Path, Rule, dense_rules, expect, linear, norm_rules, same

PRETRAINED = {"gpt2": ("gpt2", dict(d_model=768, n_layers=12, n_heads=12, d_mlp=3072))}
OPTIONS = dict(
  **PRETRAINED["gpt2"][1],
  position_embedding="learned",
  parallel_residual=False,
  activation="gelu_new",
  tie_embeddings=True,
)


def _fused_qkv(prefix: Path, key: str, is_bias: bool) -> Rule:
  """GPT-2's Conv1D stores [in, out] with out = [q | k | v]."""
  paths = tuple(prefix + (name, "bias" if is_bias else "kernel") for name in ("query", "key", "value"))
  return Rule(key, paths, lambda w: tuple(np.split(w, 3, axis=-1)), lambda xp, *qkv: xp.concatenate(qkv, axis=-1))


def embedding_and_head_rules(cfg) -> list[Rule]:
  """The embeddings, the final norm and the (optional) head, named alike in GPT-2 and GPT-Neo."""
  result = [
    same(("embed_in", "embedding"), "transformer.wte.weight"),
    same(("embed_positions", "embedding"), "transformer.wpe.weight"),
    *norm_rules(("final_layer_norm",), "transformer.ln_f"),
  ]
  return result if cfg.tie_embeddings else result + [linear(("embed_out", "kernel"), "lm_head.weight")]


def config_from_hf(hf: dict, where: str) -> dict:
  expect(hf, "activation_function", ("gelu_new",), where, "gelu_new")
  expect(hf, "scale_attn_weights", (True,), where, True)
  expect(hf, "scale_attn_by_inverse_layer_idx", (False,), where, False)
  expect(hf, "reorder_and_upcast_attn", (False,), where, False)
  d_model = hf["n_embd"]
  return dict(
    vocab_size=hf["vocab_size"],
    d_model=d_model,
    n_layers=hf["n_layer"],
    n_heads=hf["n_head"],
    d_mlp=hf.get("n_inner") or 4 * d_model,
    max_len=hf["n_positions"],
    position_embedding="learned",
    parallel_residual=False,
    layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
    activation="gelu_new",
    tie_embeddings=hf.get("tie_word_embeddings", True),
  )


def config_to_hf(cfg) -> dict:
  return {
    "vocab_size": cfg.vocab_size,
    "n_embd": cfg.d_model,
    "n_layer": cfg.n_layers,
    "n_head": cfg.n_heads,
    "n_inner": cfg.d_mlp,
    "n_positions": cfg.max_len,
    "layer_norm_epsilon": cfg.layer_norm_eps,
    "activation_function": "gelu_new",
    "tie_word_embeddings": cfg.tie_embeddings,
  }


def rules(cfg) -> list[Rule]:
  result = embedding_and_head_rules(cfg)
  for i in range(cfg.n_layers):
    ours, hf = (f"layers_{i}",), f"transformer.h.{i}"
    result += [
      *norm_rules(ours + ("input_layernorm",), f"{hf}.ln_1"),
      *norm_rules(ours + ("post_attention_layernorm",), f"{hf}.ln_2"),
      _fused_qkv(ours + ("attention",), f"{hf}.attn.c_attn.weight", is_bias=False),
      _fused_qkv(ours + ("attention",), f"{hf}.attn.c_attn.bias", is_bias=True),
      *dense_rules(ours + ("attention", "dense"), f"{hf}.attn.c_proj", True, conv1d=True),
      *dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.c_fc", True, conv1d=True),
      *dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.c_proj", True, conv1d=True),
    ]
  return result


FAMILY = Family("gpt2", "GPT2LMHeadModel", OPTIONS, PRETRAINED, config_from_hf, config_to_hf, rules)
