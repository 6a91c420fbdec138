"""GPT-J (EleutherAI's 6B model; the study's "GPT-Neo-6B" id does not exist, docs/study.md §7.1): parallel
residual with one shared input norm, interleaved partial rotary, a biased output head."""

import numpy as np

from iml_jax.models.families.base import Family, Path, Rule, dense_rules, expect, linear, norm_rules, same

PRETRAINED = {"gpt-j-6b": ("EleutherAI/gpt-j-6b", dict(d_model=4096, n_layers=28, n_heads=16, d_mlp=16384))}
OPTIONS = dict(
  **PRETRAINED["gpt-j-6b"][1],
  rotary_pct=0.25,
  shared_input_norm=True,
  activation="gelu_new",
  qkv_bias=False,
  attention_out_bias=False,
  output_bias=True,
)


def _interleaved_rotary(path: Path, key: str, heads: int, head_dim: int, rotary_dim: int) -> Rule:
  """A q/k projection. GPT-J rotates the interleaved pairs (2i, 2i+1) of each head's first `rotary_dim`
  features, we rotate (i, i + rotary_dim/2): reordering those features alike in q and k turns one into the
  other and leaves every attention score unchanged."""
  order = np.concatenate([np.arange(0, rotary_dim, 2), np.arange(1, rotary_dim, 2), np.arange(rotary_dim, head_dim)])
  inverse = np.argsort(order)

  def split(w):  # torch [out, in] -> kernel [in, out]
    return (w.reshape((heads, head_dim, -1))[:, order].reshape((heads * head_dim, -1)).T,)

  def join(xp, kernel):
    return kernel.T.reshape((heads, head_dim, -1))[:, inverse].reshape((heads * head_dim, -1))

  return Rule(key, (path,), split, join)


def config_from_hf(hf: dict, where: str) -> dict:
  expect(hf, "activation_function", ("gelu_new",), where, "gelu_new")
  d_model, heads = hf["n_embd"], hf["n_head"]
  rotary_dim = hf.get("rotary_dim") or d_model // heads
  return dict(
    vocab_size=hf["vocab_size"],
    d_model=d_model,
    n_layers=hf["n_layer"],
    n_heads=heads,
    d_mlp=hf.get("n_inner") or 4 * d_model,
    max_len=hf["n_positions"],
    rotary_pct=rotary_dim / (d_model // heads),
    parallel_residual=True,
    shared_input_norm=True,
    layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
    activation="gelu_new",
    qkv_bias=False,
    attention_out_bias=False,
    tie_embeddings=hf.get("tie_word_embeddings", False),
    output_bias=not hf.get("tie_word_embeddings", False),
  )


def config_to_hf(cfg) -> dict:
  return {
    "vocab_size": cfg.vocab_size,
    "n_embd": cfg.d_model,
    "n_layer": cfg.n_layers,
    "n_head": cfg.n_heads,
    "n_inner": cfg.d_mlp,
    "n_positions": cfg.max_len,
    "rotary_dim": cfg.rotary_dim,
    "layer_norm_epsilon": cfg.layer_norm_eps,
    "activation_function": "gelu_new",
    "tie_word_embeddings": cfg.tie_embeddings,
  }


def rules(cfg) -> list[Rule]:
  result = [
    same(("embed_in", "embedding"), "transformer.wte.weight"),
    *norm_rules(("final_layer_norm",), "transformer.ln_f"),
  ]
  if not cfg.tie_embeddings:
    result += dense_rules(("embed_out",), "lm_head", True)
  for i in range(cfg.n_layers):
    ours, hf = (f"layers_{i}",), f"transformer.h.{i}"
    attn = ours + ("attention",)
    result += [
      *norm_rules(ours + ("input_layernorm",), f"{hf}.ln_1"),
      *(
        _interleaved_rotary(
          attn + (name, "kernel"), f"{hf}.attn.{proj}.weight", cfg.n_heads, cfg.head_dim, cfg.rotary_dim
        )
        for name, proj in (("query", "q_proj"), ("key", "k_proj"))
      ),
      linear(attn + ("value", "kernel"), f"{hf}.attn.v_proj.weight"),
      linear(attn + ("dense", "kernel"), f"{hf}.attn.out_proj.weight"),
      *dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.fc_in", True),
      *dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.fc_out", True),
    ]
  return result


FAMILY = Family("gptj", "GPTJForCausalLM", OPTIONS, PRETRAINED, config_from_hf, config_to_hf, rules)
