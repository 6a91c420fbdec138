"""GPT-NeoX, the Pythia models' family: the study's main models (docs/study.md §7.1)."""

from iml_jax.models.families.base import Family, Path, Rule, dense_rules, expect, linear, norm_rules, rope, same

PRETRAINED = {
  f"pythia-{size}": (f"EleutherAI/pythia-{size}-deduped", dict(d_model=d, n_layers=n, n_heads=h, d_mlp=4 * d))
  for size, d, n, h in (
    ("70m", 512, 6, 8),
    ("160m", 768, 12, 12),
    ("410m", 1024, 24, 16),
    ("1b", 2048, 16, 8),
    ("1.4b", 2048, 24, 16),
    ("2.8b", 2560, 32, 32),
    ("6.9b", 4096, 32, 32),
  )
}
# Architecture fields of `model.name = "gpt_neox"`; the shape is Pythia-70M's.
OPTIONS = dict(PRETRAINED["pythia-70m"][1])


def _fused_qkv(prefix: Path, key: str, heads: int, head_dim: int, is_bias: bool) -> Rule:
  """GPT-NeoX interleaves q, k, v per head: rows ordered (head, q/k/v, feature)."""
  paths = tuple(prefix + (name, "bias" if is_bias else "kernel") for name in ("query", "key", "value"))

  def split(w):
    w = w.reshape((heads, 3, head_dim) + w.shape[1:])
    return tuple(w[:, i].reshape((heads * head_dim,) + w.shape[3:]).T for i in range(3))

  def join(xp, *qkv):
    parts = [p.T.reshape((heads, head_dim) + p.T.shape[1:]) for p in qkv]
    return xp.stack(parts, axis=1).reshape((3 * heads * head_dim,) + parts[0].shape[2:])

  return Rule(key, paths, split, join)


def config_from_hf(hf: dict, where: str) -> dict:
  expect(hf, "hidden_act", ("gelu",), where, "gelu")
  theta, partial = rope({"rotary_pct": 0.25, **hf})
  return dict(
    vocab_size=hf["vocab_size"],
    d_model=hf["hidden_size"],
    n_layers=hf["num_hidden_layers"],
    n_heads=hf["num_attention_heads"],
    d_mlp=hf["intermediate_size"],
    max_len=hf["max_position_embeddings"],
    rotary_pct=partial,
    rotary_base=theta,
    parallel_residual=hf.get("use_parallel_residual", True),
    layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
    tie_embeddings=hf.get("tie_word_embeddings", False),
  )


def config_to_hf(cfg) -> dict:
  return {
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.d_model,
    "num_hidden_layers": cfg.n_layers,
    "num_attention_heads": cfg.n_heads,
    "intermediate_size": cfg.d_mlp,
    "max_position_embeddings": cfg.max_len,
    "hidden_act": "gelu",
    "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base, "partial_rotary_factor": cfg.rotary_pct},
    "rotary_pct": cfg.rotary_pct,
    "rotary_emb_base": cfg.rotary_base,
    "use_parallel_residual": cfg.parallel_residual,
    "layer_norm_eps": cfg.layer_norm_eps,
    "tie_word_embeddings": cfg.tie_embeddings,
    "attention_bias": True,
  }


def rules(cfg) -> list[Rule]:
  result = [
    same(("embed_in", "embedding"), "gpt_neox.embed_in.weight"),
    *norm_rules(("final_layer_norm",), "gpt_neox.final_layer_norm"),
  ]
  if not cfg.tie_embeddings:
    result.append(linear(("embed_out", "kernel"), "embed_out.weight"))
  for i in range(cfg.n_layers):
    ours, hf = (f"layers_{i}",), f"gpt_neox.layers.{i}"
    result += [
      *norm_rules(ours + ("input_layernorm",), f"{hf}.input_layernorm"),
      *norm_rules(ours + ("post_attention_layernorm",), f"{hf}.post_attention_layernorm"),
      _fused_qkv(
        ours + ("attention",), f"{hf}.attention.query_key_value.weight", cfg.n_heads, cfg.head_dim, is_bias=False
      ),
      _fused_qkv(
        ours + ("attention",), f"{hf}.attention.query_key_value.bias", cfg.n_heads, cfg.head_dim, is_bias=True
      ),
      *dense_rules(ours + ("attention", "dense"), f"{hf}.attention.dense", True),
      *dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.dense_h_to_4h", True),
      *dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.dense_4h_to_h", True),
    ]
  return result


FAMILY = Family("gpt_neox", "GPTNeoXForCausalLM", OPTIONS, PRETRAINED, config_from_hf, config_to_hf, rules)
