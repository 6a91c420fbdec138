"""Llama: RMSNorm, full rotary, gated SiLU MLP, grouped-query attention, no biases."""

from iml_jax.errors import IMLError
from iml_jax.models.families.base import Family, Rule, dense_rules, expect, linear, rope, same

PRETRAINED = {"llama-2-7b": ("meta-llama/Llama-2-7b-hf", dict(d_model=4096, n_layers=32, n_heads=32, d_mlp=11008))}
OPTIONS = dict(
  **PRETRAINED["llama-2-7b"][1],
  rotary_pct=1.0,
  parallel_residual=False,
  norm="rmsnorm",
  activation="silu",
  gated_mlp=True,
  qkv_bias=False,
  proj_bias=False,
)


def config_from_hf(hf: dict, where: str) -> dict:
  expect(hf, "hidden_act", ("silu",), where, "silu")
  expect(hf, "mlp_bias", (False,), where, False)
  d_model, heads = hf["hidden_size"], hf["num_attention_heads"]
  if hf.get("head_dim") not in (None, d_model // heads):
    raise IMLError(
      f"{where}: head_dim = {hf['head_dim']} is not supported; expected hidden_size / "
      f"num_attention_heads = {d_model // heads}"
    )
  theta, _ = rope(hf)
  return dict(
    vocab_size=hf["vocab_size"],
    d_model=d_model,
    n_layers=hf["num_hidden_layers"],
    n_heads=heads,
    n_kv_heads=0 if hf.get("num_key_value_heads", heads) == heads else hf["num_key_value_heads"],
    d_mlp=hf["intermediate_size"],
    max_len=hf["max_position_embeddings"],
    rotary_pct=1.0,
    rotary_base=theta,
    parallel_residual=False,
    norm="rmsnorm",
    layer_norm_eps=hf.get("rms_norm_eps", 1e-6),
    activation="silu",
    gated_mlp=True,
    qkv_bias=hf.get("attention_bias", False),
    proj_bias=False,
    tie_embeddings=hf.get("tie_word_embeddings", False),
  )


def config_to_hf(cfg) -> dict:
  if cfg.qkv_bias != cfg.proj_bias:
    raise IMLError("a Llama export needs model.qkv_bias == model.proj_bias (HF has one attention_bias)")
  return {
    "vocab_size": cfg.vocab_size,
    "hidden_size": cfg.d_model,
    "num_hidden_layers": cfg.n_layers,
    "num_attention_heads": cfg.n_heads,
    "num_key_value_heads": cfg.kv_heads,
    "intermediate_size": cfg.d_mlp,
    "max_position_embeddings": cfg.max_len,
    "hidden_act": "silu",
    "rms_norm_eps": cfg.layer_norm_eps,
    "attention_bias": cfg.qkv_bias,
    "mlp_bias": False,
    "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base},
    "tie_word_embeddings": cfg.tie_embeddings,
  }


def rules(cfg) -> list[Rule]:
  result = [
    same(("embed_in", "embedding"), "model.embed_tokens.weight"),
    same(("final_layer_norm", "scale"), "model.norm.weight"),
  ]
  if not cfg.tie_embeddings:
    result.append(linear(("embed_out", "kernel"), "lm_head.weight"))
  for i in range(cfg.n_layers):
    ours, hf = (f"layers_{i}",), f"model.layers.{i}"
    attn = ours + ("attention",)
    result += [
      same(ours + ("input_layernorm", "scale"), f"{hf}.input_layernorm.weight"),
      same(ours + ("post_attention_layernorm", "scale"), f"{hf}.post_attention_layernorm.weight"),
      *(
        r
        for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
        for r in dense_rules(attn + (name,), f"{hf}.self_attn.{proj}", cfg.qkv_bias)
      ),
      *dense_rules(attn + ("dense",), f"{hf}.self_attn.o_proj", cfg.proj_bias),
      linear(ours + ("mlp", "gate", "kernel"), f"{hf}.mlp.gate_proj.weight"),
      linear(ours + ("mlp", "dense_h_to_4h", "kernel"), f"{hf}.mlp.up_proj.weight"),
      linear(ours + ("mlp", "dense_4h_to_h", "kernel"), f"{hf}.mlp.down_proj.weight"),
    ]
  return result


FAMILY = Family("llama", "LlamaForCausalLM", OPTIONS, PRETRAINED, config_from_hf, config_to_hf, rules)
