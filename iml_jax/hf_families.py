"""Per-family maps between Hugging Face checkpoints and our models: config fields and weight keys.

A `Rule` ties one HF tensor to one or more of our parameters (NeoX and GPT-2 fuse q, k, v into one
tensor; we keep them apart). `split` goes HF → ours on NumPy arrays; `join(xp, *ours)` goes back and
also runs under `jax.eval_shape` to say which HF shape a config implies.
"""
import dataclasses
from typing import Any, Callable

import numpy as np

from iml_jax.errors import IMLError
from iml_jax.models.decoder import DecoderConfig
from iml_jax.models.t5 import T5Config

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Rule:
  hf_key: str
  paths: tuple[Path, ...]
  split: Callable[[np.ndarray], tuple]
  join: Callable[..., Any]


def same(path: Path, key: str) -> Rule:
  return Rule(key, (path,), lambda w: (w,), lambda xp, w: w)


def linear(path: Path, key: str) -> Rule:
  """A torch `nn.Linear` weight [out, in] ↔ a Flax kernel [in, out]."""
  return Rule(key, (path,), lambda w: (w.T,), lambda xp, w: w.T)


def _neox_fused_qkv(prefix: Path, key: str, heads: int, head_dim: int, is_bias: bool) -> Rule:
  """GPT-NeoX interleaves q, k, v per head: rows ordered (head, q/k/v, feature)."""
  paths = tuple(prefix + (name, "bias" if is_bias else "kernel") for name in ("query", "key", "value"))

  def split(w):
    w = w.reshape((heads, 3, head_dim) + w.shape[1:])
    return tuple(w[:, i].reshape((heads * head_dim,) + w.shape[3:]).T for i in range(3))

  def join(xp, *qkv):
    parts = [p.T.reshape((heads, head_dim) + p.T.shape[1:]) for p in qkv]
    return xp.stack(parts, axis=1).reshape((3 * heads * head_dim,) + parts[0].shape[2:])
  return Rule(key, paths, split, join)


def _gpt2_fused_qkv(prefix: Path, key: str, is_bias: bool) -> Rule:
  """GPT-2's Conv1D stores [in, out] with out = [q | k | v]."""
  paths = tuple(prefix + (name, "bias" if is_bias else "kernel") for name in ("query", "key", "value"))
  return Rule(key, paths, lambda w: tuple(np.split(w, 3, axis=-1)), lambda xp, *qkv: xp.concatenate(qkv, axis=-1))


def _interleaved_rotary(path: Path, key: str, heads: int, head_dim: int, rotary_dim: int) -> Rule:
  """A GPT-J q/k projection. GPT-J rotates the interleaved pairs (2i, 2i+1) of each head's first `rotary_dim`
  features, we rotate (i, i + rotary_dim/2): reordering those features alike in q and k turns one into the
  other and leaves every attention score unchanged."""
  order = np.concatenate([np.arange(0, rotary_dim, 2), np.arange(1, rotary_dim, 2), np.arange(rotary_dim, head_dim)])
  inverse = np.argsort(order)

  def split(w):  # torch [out, in] -> kernel [in, out]
    return (w.reshape((heads, head_dim, -1))[:, order].reshape((heads * head_dim, -1)).T,)

  def join(xp, kernel):
    return kernel.T.reshape((heads, head_dim, -1))[:, inverse].reshape((heads * head_dim, -1))
  return Rule(key, (path,), split, join)


def _norm_rules(path: Path, key: str, with_bias: bool = True) -> list[Rule]:
  rules = [same(path + ("scale",), f"{key}.weight")]
  return rules + [same(path + ("bias",), f"{key}.bias")] if with_bias else rules


def _dense_rules(path: Path, key: str, with_bias: bool, conv1d: bool = False) -> list[Rule]:
  rules = [(same if conv1d else linear)(path + ("kernel",), f"{key}.weight")]
  return rules + [same(path + ("bias",), f"{key}.bias")] if with_bias else rules


def _rope(hf: dict) -> tuple[float, float]:
  """(theta, partial factor) from transformers 5's `rope_parameters` or the older top-level fields."""
  rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
  if rope.get("rope_type", "default") != "default":
    raise IMLError(f"rope type {rope['rope_type']!r} is not supported; expected 'default'")
  theta = rope.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0)))
  return theta, rope.get("partial_rotary_factor", hf.get("rotary_pct", hf.get("partial_rotary_factor", 1.0)))


def _expect(hf: dict, field: str, allowed, where: str, default=None) -> None:
  value = hf.get(field, default)
  if value not in allowed:
    raise IMLError(f"{where}: {field} = {value!r} is not supported; expected one of {list(allowed)}")


class Family:
  model_type: str
  architecture: str

  def config_from_hf(self, hf: dict, where: str):
    raise NotImplementedError

  def config_to_hf(self, cfg) -> dict:
    raise NotImplementedError

  def rules(self, cfg) -> list[Rule]:
    raise NotImplementedError

  def fit_to_weights(self, cfg, keys):
    """The config as the checkpoint's tensor names refine it (T5: is the head stored on its own?)."""
    return cfg


class GPTNeoX(Family):
  model_type, architecture = "gpt_neox", "GPTNeoXForCausalLM"

  def config_from_hf(self, hf, where):
    _expect(hf, "hidden_act", ("gelu",), where, "gelu")
    theta, partial = _rope({"rotary_pct": 0.25, **hf})
    return DecoderConfig(
        family=self.model_type, vocab_size=hf["vocab_size"], d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"], d_mlp=hf["intermediate_size"], max_len=hf["max_position_embeddings"],
        rotary_pct=partial, rotary_base=theta, parallel_residual=hf.get("use_parallel_residual", True),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-5), tie_embeddings=hf.get("tie_word_embeddings", False))

  def config_to_hf(self, cfg):
    return {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": cfg.n_heads, "intermediate_size": cfg.d_mlp,
            "max_position_embeddings": cfg.max_len, "hidden_act": "gelu",
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base,
                                "partial_rotary_factor": cfg.rotary_pct},
            "rotary_pct": cfg.rotary_pct, "rotary_emb_base": cfg.rotary_base,
            "use_parallel_residual": cfg.parallel_residual, "layer_norm_eps": cfg.layer_norm_eps,
            "tie_word_embeddings": cfg.tie_embeddings, "attention_bias": True}

  def rules(self, cfg):
    rules = [same(("embed_in", "embedding"), "gpt_neox.embed_in.weight"),
             *_norm_rules(("final_layer_norm",), "gpt_neox.final_layer_norm")]
    if not cfg.tie_embeddings:
      rules.append(linear(("embed_out", "kernel"), "embed_out.weight"))
    for i in range(cfg.n_layers):
      ours, hf = (f"layers_{i}",), f"gpt_neox.layers.{i}"
      rules += [*_norm_rules(ours + ("input_layernorm",), f"{hf}.input_layernorm"),
                *_norm_rules(ours + ("post_attention_layernorm",), f"{hf}.post_attention_layernorm"),
                _neox_fused_qkv(ours + ("attention",), f"{hf}.attention.query_key_value.weight", cfg.n_heads,
                                cfg.head_dim, is_bias=False),
                _neox_fused_qkv(ours + ("attention",), f"{hf}.attention.query_key_value.bias", cfg.n_heads,
                                cfg.head_dim, is_bias=True),
                *_dense_rules(ours + ("attention", "dense"), f"{hf}.attention.dense", True),
                *_dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.dense_h_to_4h", True),
                *_dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.dense_4h_to_h", True)]
    return rules


def _gpt2_style_globals(cfg) -> list[Rule]:
  """GPT-2 and GPT-Neo share the embeddings, the final norm and the (optional) head's names."""
  rules = [same(("embed_in", "embedding"), "transformer.wte.weight"),
           same(("embed_positions", "embedding"), "transformer.wpe.weight"),
           *_norm_rules(("final_layer_norm",), "transformer.ln_f")]
  return rules if cfg.tie_embeddings else rules + [linear(("embed_out", "kernel"), "lm_head.weight")]


class GPT2(Family):
  model_type, architecture = "gpt2", "GPT2LMHeadModel"

  def config_from_hf(self, hf, where):
    _expect(hf, "activation_function", ("gelu_new",), where, "gelu_new")
    _expect(hf, "scale_attn_weights", (True,), where, True)
    _expect(hf, "scale_attn_by_inverse_layer_idx", (False,), where, False)
    _expect(hf, "reorder_and_upcast_attn", (False,), where, False)
    d_model = hf["n_embd"]
    return DecoderConfig(
        family=self.model_type, vocab_size=hf["vocab_size"], d_model=d_model, n_layers=hf["n_layer"],
        n_heads=hf["n_head"],
        d_mlp=hf.get("n_inner") or 4 * d_model, max_len=hf["n_positions"], position_embedding="learned",
        parallel_residual=False, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), activation="gelu_new",
        tie_embeddings=hf.get("tie_word_embeddings", True))

  def config_to_hf(self, cfg):
    return {"vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_layer": cfg.n_layers, "n_head": cfg.n_heads,
            "n_inner": cfg.d_mlp, "n_positions": cfg.max_len, "layer_norm_epsilon": cfg.layer_norm_eps,
            "activation_function": "gelu_new", "tie_word_embeddings": cfg.tie_embeddings}

  def rules(self, cfg):
    rules = _gpt2_style_globals(cfg)
    for i in range(cfg.n_layers):
      ours, hf = (f"layers_{i}",), f"transformer.h.{i}"
      rules += [*_norm_rules(ours + ("input_layernorm",), f"{hf}.ln_1"),
                *_norm_rules(ours + ("post_attention_layernorm",), f"{hf}.ln_2"),
                _gpt2_fused_qkv(ours + ("attention",), f"{hf}.attn.c_attn.weight", is_bias=False),
                _gpt2_fused_qkv(ours + ("attention",), f"{hf}.attn.c_attn.bias", is_bias=True),
                *_dense_rules(ours + ("attention", "dense"), f"{hf}.attn.c_proj", True, conv1d=True),
                *_dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.c_fc", True, conv1d=True),
                *_dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.c_proj", True, conv1d=True)]
    return rules


class GPTNeo(Family):
  model_type, architecture = "gpt_neo", "GPTNeoForCausalLM"

  def config_from_hf(self, hf, where):
    _expect(hf, "activation_function", ("gelu_new",), where, "gelu_new")
    layer_types = hf.get("attention_layers") or [t for types, n in hf["attention_types"] for _ in range(n)
                                                 for t in types]
    d_model = hf["hidden_size"]
    return DecoderConfig(
        family=self.model_type, vocab_size=hf["vocab_size"], d_model=d_model, n_layers=hf["num_layers"],
        n_heads=hf["num_heads"],
        d_mlp=hf.get("intermediate_size") or 4 * d_model, max_len=hf["max_position_embeddings"],
        position_embedding="learned", parallel_residual=False, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation="gelu_new", qkv_bias=False, scale_attention=False,
        local_layers=tuple(i for i, t in enumerate(layer_types) if t == "local"),
        local_window=hf.get("window_size", 256), tie_embeddings=hf.get("tie_word_embeddings", True))

  def config_to_hf(self, cfg):
    types = ["local" if i in cfg.local_layers else "global" for i in range(cfg.n_layers)]
    return {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "num_layers": cfg.n_layers,
            "num_heads": cfg.n_heads, "intermediate_size": cfg.d_mlp, "max_position_embeddings": cfg.max_len,
            "attention_types": [[[t], 1] for t in types], "window_size": cfg.local_window,
            "layer_norm_epsilon": cfg.layer_norm_eps, "activation_function": "gelu_new",
            "tie_word_embeddings": cfg.tie_embeddings}

  def rules(self, cfg):
    rules = _gpt2_style_globals(cfg)
    for i in range(cfg.n_layers):
      ours, hf = (f"layers_{i}",), f"transformer.h.{i}"
      attn = ours + ("attention",)
      rules += [*_norm_rules(ours + ("input_layernorm",), f"{hf}.ln_1"),
                *_norm_rules(ours + ("post_attention_layernorm",), f"{hf}.ln_2"),
                *(linear(attn + (name, "kernel"), f"{hf}.attn.attention.{proj}.weight")
                  for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))),
                *_dense_rules(attn + ("dense",), f"{hf}.attn.attention.out_proj", True),
                *_dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.c_fc", True),
                *_dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.c_proj", True)]
    return rules


class GPTJ(Family):
  """GPT-J (EleutherAI's 6B model; the study's "GPT-Neo-6B" id does not exist, docs/study.md §7.1)."""
  model_type, architecture = "gptj", "GPTJForCausalLM"

  def config_from_hf(self, hf, where):
    _expect(hf, "activation_function", ("gelu_new",), where, "gelu_new")
    d_model, heads = hf["n_embd"], hf["n_head"]
    rotary_dim = hf.get("rotary_dim") or d_model // heads
    return DecoderConfig(
        family=self.model_type, vocab_size=hf["vocab_size"], d_model=d_model, n_layers=hf["n_layer"], n_heads=heads,
        d_mlp=hf.get("n_inner") or 4 * d_model, max_len=hf["n_positions"], rotary_pct=rotary_dim / (d_model // heads),
        parallel_residual=True, shared_input_norm=True, layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation="gelu_new", qkv_bias=False, attention_out_bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", False), output_bias=not hf.get("tie_word_embeddings", False))

  def config_to_hf(self, cfg):
    return {"vocab_size": cfg.vocab_size, "n_embd": cfg.d_model, "n_layer": cfg.n_layers, "n_head": cfg.n_heads,
            "n_inner": cfg.d_mlp, "n_positions": cfg.max_len, "rotary_dim": cfg.rotary_dim,
            "layer_norm_epsilon": cfg.layer_norm_eps, "activation_function": "gelu_new",
            "tie_word_embeddings": cfg.tie_embeddings}

  def rules(self, cfg):
    rules = [same(("embed_in", "embedding"), "transformer.wte.weight"),
             *_norm_rules(("final_layer_norm",), "transformer.ln_f")]
    if not cfg.tie_embeddings:
      rules += _dense_rules(("embed_out",), "lm_head", True)
    for i in range(cfg.n_layers):
      ours, hf = (f"layers_{i}",), f"transformer.h.{i}"
      attn = ours + ("attention",)
      rules += [*_norm_rules(ours + ("input_layernorm",), f"{hf}.ln_1"),
                *(_interleaved_rotary(attn + (name, "kernel"), f"{hf}.attn.{proj}.weight", cfg.n_heads, cfg.head_dim,
                                      cfg.rotary_dim) for name, proj in (("query", "q_proj"), ("key", "k_proj"))),
                linear(attn + ("value", "kernel"), f"{hf}.attn.v_proj.weight"),
                linear(attn + ("dense", "kernel"), f"{hf}.attn.out_proj.weight"),
                *_dense_rules(ours + ("mlp", "dense_h_to_4h"), f"{hf}.mlp.fc_in", True),
                *_dense_rules(ours + ("mlp", "dense_4h_to_h"), f"{hf}.mlp.fc_out", True)]
    return rules


class Llama(Family):
  model_type, architecture = "llama", "LlamaForCausalLM"

  def config_from_hf(self, hf, where):
    _expect(hf, "hidden_act", ("silu",), where, "silu")
    _expect(hf, "mlp_bias", (False,), where, False)
    d_model, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d_model // heads):
      raise IMLError(f"{where}: head_dim = {hf['head_dim']} is not supported; expected hidden_size / "
                     f"num_attention_heads = {d_model // heads}")
    theta, _ = _rope(hf)
    return DecoderConfig(
        family=self.model_type, vocab_size=hf["vocab_size"], d_model=d_model, n_layers=hf["num_hidden_layers"],
        n_heads=heads, n_kv_heads=0 if hf.get("num_key_value_heads", heads) == heads else hf["num_key_value_heads"],
        d_mlp=hf["intermediate_size"],
        max_len=hf["max_position_embeddings"], rotary_pct=1.0, rotary_base=theta, parallel_residual=False,
        norm="rmsnorm", layer_norm_eps=hf.get("rms_norm_eps", 1e-6), activation="silu", gated_mlp=True,
        qkv_bias=hf.get("attention_bias", False), proj_bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", False))

  def config_to_hf(self, cfg):
    if cfg.qkv_bias != cfg.proj_bias:
      raise IMLError("a Llama export needs model.qkv_bias == model.proj_bias (HF has one attention_bias)")
    return {"vocab_size": cfg.vocab_size, "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers,
            "num_attention_heads": cfg.n_heads, "num_key_value_heads": cfg.kv_heads,
            "intermediate_size": cfg.d_mlp, "max_position_embeddings": cfg.max_len, "hidden_act": "silu",
            "rms_norm_eps": cfg.layer_norm_eps, "attention_bias": cfg.qkv_bias, "mlp_bias": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base},
            "tie_word_embeddings": cfg.tie_embeddings}

  def rules(self, cfg):
    rules = [same(("embed_in", "embedding"), "model.embed_tokens.weight"),
             same(("final_layer_norm", "scale"), "model.norm.weight")]
    if not cfg.tie_embeddings:
      rules.append(linear(("embed_out", "kernel"), "lm_head.weight"))
    for i in range(cfg.n_layers):
      ours, hf = (f"layers_{i}",), f"model.layers.{i}"
      attn = ours + ("attention",)
      rules += [same(ours + ("input_layernorm", "scale"), f"{hf}.input_layernorm.weight"),
                same(ours + ("post_attention_layernorm", "scale"), f"{hf}.post_attention_layernorm.weight"),
                *(r for name, proj in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
                  for r in _dense_rules(attn + (name,), f"{hf}.self_attn.{proj}", cfg.qkv_bias)),
                *_dense_rules(attn + ("dense",), f"{hf}.self_attn.o_proj", cfg.proj_bias),
                linear(ours + ("mlp", "gate", "kernel"), f"{hf}.mlp.gate_proj.weight"),
                linear(ours + ("mlp", "dense_h_to_4h", "kernel"), f"{hf}.mlp.up_proj.weight"),
                linear(ours + ("mlp", "dense_4h_to_h", "kernel"), f"{hf}.mlp.down_proj.weight")]
    return rules


class T5(Family):
  model_type, architecture = "t5", "T5ForConditionalGeneration"

  def config_from_hf(self, hf, where):
    proj = hf.get("feed_forward_proj", "relu")
    _expect(hf, "feed_forward_proj", ("relu", "gated-gelu"), where, "relu")
    return T5Config(
        vocab_size=hf["vocab_size"], d_model=hf["d_model"], d_kv=hf["d_kv"], d_ff=hf["d_ff"],
        n_heads=hf["num_heads"], n_layers=hf["num_layers"],
        n_decoder_layers=0 if hf.get("num_decoder_layers") in (None, hf["num_layers"]) else hf["num_decoder_layers"],
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6), gated_mlp=proj == "gated-gelu",
        activation="gelu_new" if proj == "gated-gelu" else "relu",
        tie_embeddings=hf.get("tie_word_embeddings", True) is not False,
        scale_decoder_outputs=hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False),
        decoder_start_id=hf.get("decoder_start_token_id", 0) or 0)

  def config_to_hf(self, cfg):
    return {"vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff,
            "num_heads": cfg.n_heads, "num_layers": cfg.n_layers, "num_decoder_layers": cfg.decoder_layers,
            "relative_attention_num_buckets": cfg.relative_buckets,
            "relative_attention_max_distance": cfg.relative_max_distance, "layer_norm_epsilon": cfg.layer_norm_eps,
            "feed_forward_proj": "gated-gelu" if cfg.gated_mlp else "relu", "is_encoder_decoder": True,
            "tie_word_embeddings": cfg.tie_embeddings, "scale_decoder_outputs": cfg.scale_decoder_outputs,
            "decoder_start_token_id": cfg.decoder_start_id,
            "pad_token_id": cfg.decoder_start_id}

  def fit_to_weights(self, cfg, keys):
    # transformers ties lm_head to the shared embedding unless the checkpoint stores both.
    if keys and not cfg.tie_embeddings and "lm_head.weight" not in keys:
      return dataclasses.replace(cfg, tie_embeddings=True)
    return cfg

  def rules(self, cfg):
    rules = [same(("shared", "embedding"), "shared.weight"),
             same(("encoder", "final_layer_norm", "scale"), "encoder.final_layer_norm.weight"),
             same(("decoder", "final_layer_norm", "scale"), "decoder.final_layer_norm.weight")]
    if not cfg.tie_embeddings:
      rules.append(linear(("lm_head", "kernel"), "lm_head.weight"))
    for stack, n_layers in (("encoder", cfg.n_layers), ("decoder", cfg.decoder_layers)):
      attentions = [("self_attention", "SelfAttention")]
      if stack == "decoder":
        attentions.append(("cross_attention", "EncDecAttention"))
      for i in range(n_layers):
        ours, hf = (stack, f"layers_{i}"), f"{stack}.block.{i}.layer"
        for j, (name, hf_name) in enumerate(attentions):
          rules.append(same(ours + (f"{name}_norm", "scale"), f"{hf}.{j}.layer_norm.weight"))
          rules += [linear(ours + (name, p, "kernel"), f"{hf}.{j}.{hf_name}.{p}.weight") for p in "qkvo"]
        if i == 0:
          rules.append(same((stack, "relative_attention_bias", "embedding"),
                            f"{hf}.0.SelfAttention.relative_attention_bias.weight"))
        ff = f"{hf}.{len(attentions)}"
        rules.append(same(ours + ("mlp_norm", "scale"), f"{ff}.layer_norm.weight"))
        if cfg.gated_mlp:
          rules += [linear(ours + ("mlp", "gate", "kernel"), f"{ff}.DenseReluDense.wi_0.weight"),
                    linear(ours + ("mlp", "wi", "kernel"), f"{ff}.DenseReluDense.wi_1.weight")]
        else:
          rules.append(linear(ours + ("mlp", "wi", "kernel"), f"{ff}.DenseReluDense.wi.weight"))
        rules.append(linear(ours + ("mlp", "wo", "kernel"), f"{ff}.DenseReluDense.wo.weight"))
    return rules


FAMILIES: dict[str, Family] = {f.model_type: f for f in (GPTNeoX(), GPT2(), GPTNeo(), GPTJ(), Llama(), T5())}
