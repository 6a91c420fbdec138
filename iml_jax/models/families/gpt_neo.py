"""GPT-Neo: GPT-2's layout with alternating global and local (windowed) attention, unscaled scores."""

from iml_jax.models.families.base import Family, Rule, dense_rules, expect, linear, norm_rules
from iml_jax.models.families.gpt2 import embedding_and_head_rules

PRETRAINED = {
  f"gpt-neo-{size}": (
    f"EleutherAI/gpt-neo-{size}",
    dict(d_model=d, n_layers=n, n_heads=h, d_mlp=4 * d, local_layers=tuple(range(1, n, 2))),
  )
  for size, d, n, h in (("125M", 768, 12, 12), ("350M", 1024, 24, 16), ("1.3B", 2048, 24, 16), ("2.7B", 2560, 32, 20))
}
# The study's configs name EleutherAI/gpt-neo-350M, which the hub may no longer serve: a run may need a copy of its
# weights (model.init_from=PATH); without one, loading says it cannot reach or find the id.
# The shape is GPT-Neo-125M's.
OPTIONS = dict(
  **PRETRAINED["gpt-neo-125M"][1],
  position_embedding="learned",
  parallel_residual=False,
  activation="gelu_new",
  qkv_bias=False,
  scale_attention=False,
  local_window=256,
  tie_embeddings=True,
)


def config_from_hf(hf: dict, where: str) -> dict:
  expect(hf, "activation_function", ("gelu_new",), where, "gelu_new")
  layer_types = hf.get("attention_layers") or [t for types, n in hf["attention_types"] for _ in range(n) for t in types]
  d_model = hf["hidden_size"]
  return dict(
    vocab_size=hf["vocab_size"],
    d_model=d_model,
    n_layers=hf["num_layers"],
    n_heads=hf["num_heads"],
    d_mlp=hf.get("intermediate_size") or 4 * d_model,
    max_len=hf["max_position_embeddings"],
    position_embedding="learned",
    parallel_residual=False,
    layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
    activation="gelu_new",
    qkv_bias=False,
    scale_attention=False,
    local_layers=tuple(i for i, t in enumerate(layer_types) if t == "local"),
    local_window=hf.get("window_size", 256),
    tie_embeddings=hf.get("tie_word_embeddings", True),
  )


def config_to_hf(cfg) -> dict:
  types = ["local" if i in cfg.local_layers else "global" for i in range(cfg.n_layers)]
  return {
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.d_model,
    "num_layers": cfg.n_layers,
    "num_heads": cfg.n_heads,
    "intermediate_size": cfg.d_mlp,
    "max_position_embeddings": cfg.max_len,
    "attention_types": [[[t], 1] for t in types],
    "window_size": cfg.local_window,
    "layer_norm_epsilon": cfg.layer_norm_eps,
    "activation_function": "gelu_new",
    "tie_word_embeddings": cfg.tie_embeddings,
  }


def rules(cfg) -> list[Rule]:
  result = embedding_and_head_rules(cfg)
  for i in range(cfg.n_layers):
    ours, hf = (f"layers_{i}",), f"transformer.h.{i}"
    attn = ours + ("attention",)
    result += [
      *norm_rules(ours + ("input_layernorm",), f"{hf}.ln_1"),
      *norm_rules(ours + ("post_attention_layernorm",), f"{hf}.ln_2"),
      *(
        linear(attn + (name, "kernel"), f"{hf}.attn.attention.{proj}.weight")
        for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
      ),
      *dense_rules(attn + ("dense",), f"{hf}.attn.attention.out_proj", True),
      *dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.c_fc", True),
      *dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.c_proj", True),
    ]
  return result


FAMILY = Family("gpt_neo", "GPTNeoForCausalLM", OPTIONS, PRETRAINED, config_from_hf, config_to_hf, rules)
