"""T5 (v1.0; v1.1 is activation='gelu_new', gated_mlp=True, tie_embeddings=False, scale_decoder_outputs=False):
the study's encoder–decoder models."""

import dataclasses

from iml_jax.models.families.base import Family, Rule, expect, linear, same

PRETRAINED = {
  "t5-small": ("google-t5/t5-small", dict(d_model=512, d_kv=64, d_ff=2048, n_heads=8, n_layers=6)),
  "t5-3b": ("google-t5/t5-3b", dict(d_model=1024, d_kv=128, d_ff=16384, n_heads=32, n_layers=24)),
}
# T5's own initialisation scales; the shape is t5-small's.
OPTIONS = dict(init_std=0.05, embedding_init_std=1.0, **PRETRAINED["t5-small"][1])


def config_from_hf(hf: dict, where: str) -> dict:
  proj = hf.get("feed_forward_proj", "relu")
  expect(hf, "feed_forward_proj", ("relu", "gated-gelu"), where, "relu")
  return dict(
    vocab_size=hf["vocab_size"],
    d_model=hf["d_model"],
    d_kv=hf["d_kv"],
    d_ff=hf["d_ff"],
    n_heads=hf["num_heads"],
    n_layers=hf["num_layers"],
    n_decoder_layers=0 if hf.get("num_decoder_layers") in (None, hf["num_layers"]) else hf["num_decoder_layers"],
    relative_buckets=hf.get("relative_attention_num_buckets", 32),
    relative_max_distance=hf.get("relative_attention_max_distance", 128),
    layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6),
    gated_mlp=proj == "gated-gelu",
    activation="gelu_new" if proj == "gated-gelu" else "relu",
    tie_embeddings=hf.get("tie_word_embeddings", True) is not False,
    scale_decoder_outputs=hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False),
    decoder_start_id=hf.get("decoder_start_token_id", 0) or 0,
  )


def config_to_hf(cfg) -> dict:
  return {
    "vocab_size": cfg.vocab_size,
    "d_model": cfg.d_model,
    "d_kv": cfg.d_kv,
    "d_ff": cfg.d_ff,
    "num_heads": cfg.n_heads,
    "num_layers": cfg.n_layers,
    "num_decoder_layers": cfg.decoder_layers,
    "relative_attention_num_buckets": cfg.relative_buckets,
    "relative_attention_max_distance": cfg.relative_max_distance,
    "layer_norm_epsilon": cfg.layer_norm_eps,
    "feed_forward_proj": "gated-gelu" if cfg.gated_mlp else "relu",
    "is_encoder_decoder": True,
    "tie_word_embeddings": cfg.tie_embeddings,
    "scale_decoder_outputs": cfg.scale_decoder_outputs,
    "decoder_start_token_id": cfg.decoder_start_id,
    "pad_token_id": cfg.decoder_start_id,
  }


def fit_to_weights(cfg, keys: set):
  # transformers ties lm_head to the shared embedding unless the checkpoint stores both.
  if keys and not cfg.tie_embeddings and "lm_head.weight" not in keys:
    return dataclasses.replace(cfg, tie_embeddings=True)
  return cfg


def rules(cfg) -> list[Rule]:
  result = [
    same(("shared", "embedding"), "shared.weight"),
    same(("encoder", "final_layer_norm", "scale"), "encoder.final_layer_norm.weight"),
    same(("decoder", "final_layer_norm", "scale"), "decoder.final_layer_norm.weight"),
  ]
  if not cfg.tie_embeddings:
    result.append(linear(("lm_head", "kernel"), "lm_head.weight"))
  for stack, n_layers in (("encoder", cfg.n_layers), ("decoder", cfg.decoder_layers)):
    attentions = [("self_attention", "SelfAttention")]
    if stack == "decoder":
      attentions.append(("cross_attention", "EncDecAttention"))
    for i in range(n_layers):
      ours, hf = (stack, f"layers_{i}"), f"{stack}.block.{i}.layer"
      for j, (name, hf_name) in enumerate(attentions):
        result.append(same(ours + (f"{name}_norm", "scale"), f"{hf}.{j}.layer_norm.weight"))
        result += [linear(ours + (name, p, "kernel"), f"{hf}.{j}.{hf_name}.{p}.weight") for p in "qkvo"]
      if i == 0:
        result.append(
          same((stack, "relative_attention_bias", "embedding"), f"{hf}.0.SelfAttention.relative_attention_bias.weight")
        )
      ff = f"{hf}.{len(attentions)}"
      result.append(same(ours + ("mlp_norm", "scale"), f"{ff}.layer_norm.weight"))
      if cfg.gated_mlp:
        result += [
          linear(ours + ("mlp", "gate", "kernel"), f"{ff}.DenseReluDense.wi_0.weight"),
          linear(ours + ("mlp", "wi", "kernel"), f"{ff}.DenseReluDense.wi_1.weight"),
        ]
      else:
        result.append(linear(ours + ("mlp", "wi", "kernel"), f"{ff}.DenseReluDense.wi.weight"))
      result.append(linear(ours + ("mlp", "wo", "kernel"), f"{ff}.DenseReluDense.wo.weight"))
  return result


FAMILY = Family(
  "t5", "T5ForConditionalGeneration", OPTIONS, PRETRAINED, config_from_hf, config_to_hf, rules, fit_to_weights
)
