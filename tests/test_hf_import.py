"""Hugging Face import/export of every family against tiny random transformers PyTorch models built here
(no downloads)."""

import json
import re
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch  # the CPU wheel, from the [test] extra
import transformers

from iml_jax import hf_import
from iml_jax.errors import IMLError
from iml_jax.models.decoding import greedy_decode, greedy_decode_seq2seq
from iml_jax.models import registry
from iml_jax.models.decoder import DecoderLM
from iml_jax.models.t5 import T5

torch.set_num_threads(1)
VOCAB = 71
TINY = dict(vocab_size=VOCAB)
# Several tiny configs per family, covering each family's options.
DECODER_CONFIGS = {
  "pythia_parallel_partial_rotary": (
    transformers.GPTNeoXConfig,
    transformers.GPTNeoXForCausalLM,
    dict(
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      intermediate_size=64,
      max_position_embeddings=64,
      rotary_pct=0.25,
      use_parallel_residual=True,
    ),
  ),
  "neox_sequential_full_rotary": (
    transformers.GPTNeoXConfig,
    transformers.GPTNeoXForCausalLM,
    dict(
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      intermediate_size=64,
      max_position_embeddings=64,
      rotary_pct=1.0,
      use_parallel_residual=False,
      rotary_emb_base=500.0,
    ),
  ),
  "gpt2_tied": (
    transformers.GPT2Config,
    transformers.GPT2LMHeadModel,
    dict(n_embd=32, n_layer=2, n_head=4, n_positions=64),
  ),
  "gpt2_untied_n_inner": (
    transformers.GPT2Config,
    transformers.GPT2LMHeadModel,
    dict(n_embd=32, n_layer=3, n_head=2, n_inner=48, n_positions=64, tie_word_embeddings=False),
  ),
  "gpt_neo_local_global": (
    transformers.GPTNeoConfig,
    transformers.GPTNeoForCausalLM,
    dict(
      hidden_size=32,
      num_layers=2,
      num_heads=4,
      max_position_embeddings=64,
      window_size=5,
      attention_types=[[["global", "local"], 1]],
    ),
  ),
  "gpt_neo_all_local_untied": (
    transformers.GPTNeoConfig,
    transformers.GPTNeoForCausalLM,
    dict(
      hidden_size=32,
      num_layers=2,
      num_heads=2,
      intermediate_size=40,
      max_position_embeddings=64,
      window_size=3,
      attention_types=[[["local"], 2]],
      tie_word_embeddings=False,
    ),
  ),
  "gptj_partial_rotary": (
    transformers.GPTJConfig,
    transformers.GPTJForCausalLM,
    dict(n_embd=32, n_layer=2, n_head=2, rotary_dim=6, n_positions=64),
  ),
  "gptj_full_rotary_n_inner": (
    transformers.GPTJConfig,
    transformers.GPTJForCausalLM,
    dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=8, n_inner=48, n_positions=64),
  ),
  "llama_gqa": (
    transformers.LlamaConfig,
    transformers.LlamaForCausalLM,
    dict(
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      intermediate_size=48,
      max_position_embeddings=64,
      rms_norm_eps=1e-6,
    ),
  ),
  "llama_mha_tied_theta": (
    transformers.LlamaConfig,
    transformers.LlamaForCausalLM,
    dict(
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      intermediate_size=48,
      max_position_embeddings=64,
      tie_word_embeddings=True,
      rope_theta=500.0,
    ),
  ),
}


def _save(tmp_path, config_cls, model_cls, options):
  torch.manual_seed(0)
  model = model_cls(config_cls(**TINY, **options)).eval()
  for p in model.parameters():  # non-trivial norms and biases, so that a mixed-up key shows
    if p.dim() == 1:
      torch.nn.init.normal_(p, mean=1.0 if p.abs().max() == 1 else 0.0, std=0.2)
  model.save_pretrained(tmp_path / "hf")
  return model, str(tmp_path / "hf")


def _tiny(tmp_path, name):
  return _save(tmp_path, *DECODER_CONFIGS[name])


def _batch():
  tokens = np.random.default_rng(0).integers(1, VOCAB, size=(3, 12))
  mask = np.ones_like(tokens)
  mask[1, :4] = 0  # left padding in one row
  tokens[1, :4] = 0
  return tokens, mask


def _flax_logits(cfg, params, tokens, mask):
  valid = mask.astype(bool)
  positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0)
  causal = np.tril(np.ones((tokens.shape[1],) * 2, bool))[None] & valid[:, None, :]
  logits, _ = DecoderLM(cfg).apply({"params": params}, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(causal))
  return np.asarray(logits)


def _torch_logits(model, tokens, mask):
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  with torch.no_grad():
    return model(
      input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask), position_ids=torch.tensor(positions)
    ).logits.numpy()


@pytest.mark.parametrize("name", DECODER_CONFIGS)
def test_logits_match_pytorch(tmp_path, name):
  model, folder = _tiny(tmp_path, name)
  cfg, params = hf_import.load_hf_model(folder)
  tokens, mask = _batch()
  ours, reference = _flax_logits(cfg, params, tokens, mask), _torch_logits(model, tokens, mask)
  valid = mask.astype(bool)
  np.testing.assert_allclose(ours[valid], reference[valid], atol=1e-4)


@pytest.mark.parametrize(
  "name", ["pythia_parallel_partial_rotary", "gpt2_tied", "gpt_neo_local_global", "gptj_partial_rotary", "llama_gqa"]
)
def test_greedy_generation_matches_pytorch(tmp_path, name):
  model, folder = _tiny(tmp_path, name)
  cfg, params = hf_import.load_hf_model(folder)
  prompts = np.random.default_rng(1).integers(3, VOCAB, size=(4, 6))
  with torch.no_grad():
    reference = model.generate(
      torch.tensor(prompts), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0
    ).numpy()[:, 6:]
  ours = np.asarray(greedy_decode(DecoderLM(cfg), params, jnp.asarray(prompts), 16, eos_id=-1))
  np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("name", DECODER_CONFIGS)
def test_export_round_trip_loads_in_pytorch(tmp_path, name):
  model, folder = _tiny(tmp_path, name)
  cfg, params = hf_import.load_hf_model(folder)
  hf_import.export_hf_model(str(tmp_path / "exported"), cfg, params)
  reloaded = type(model).from_pretrained(str(tmp_path / "exported")).eval()
  tokens, mask = _batch()
  np.testing.assert_allclose(_torch_logits(reloaded, tokens, mask), _torch_logits(model, tokens, mask), atol=1e-5)


def test_sharded_checkpoint_with_index_and_bf16_weights(tmp_path):
  model, _ = _tiny(tmp_path, "llama_gqa")
  folder = str(tmp_path / "sharded")
  model.to(torch.bfloat16).save_pretrained(folder, max_shard_size="20KB")
  assert os.path.exists(os.path.join(folder, "model.safetensors.index.json"))
  assert len([f for f in os.listdir(folder) if f.endswith(".safetensors")]) > 1
  cfg, params = hf_import.load_hf_model(folder)
  tokens, mask = _batch()
  reference = _torch_logits(model.float(), tokens, mask)  # the same bf16-rounded weights, in fp32
  valid = mask.astype(bool)
  np.testing.assert_allclose(_flax_logits(cfg, params, tokens, mask)[valid], reference[valid], atol=1e-4)
  os.remove(os.path.join(folder, sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))[0]))
  with pytest.raises(IMLError, match="model.safetensors.index.json lists .* which are missing"):
    hf_import.load_hf_model(folder)


def test_clear_errors(tmp_path):
  with pytest.raises(IMLError, match="config.json does not exist"):
    hf_import.load_hf_model(str(tmp_path))
  _, folder = _tiny(tmp_path, "pythia_parallel_partial_rotary")
  weights = os.path.join(folder, "model.safetensors")
  torch.save({"x": torch.zeros(1)}, os.path.join(folder, "pytorch_model.bin"))
  os.rename(weights, weights + ".away")
  with pytest.raises(IMLError, match="only pickle weights .*allow_pickle"):
    hf_import.load_hf_model(folder)
  os.rename(weights + ".away", weights)
  config = json.load(open(os.path.join(folder, "config.json")))
  json.dump({**config, "model_type": "bert"}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match="model_type 'bert' is not supported"):
    hf_import.load_hf_model(folder)
  json.dump({**config, "vocab_size": 80}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match=r"gpt_neox.embed_in.weight has shape \(71, 32\), config.json implies \(80, 32\)"):
    hf_import.load_hf_model(folder)
  json.dump({**config, "hidden_act": "relu"}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match="hidden_act = 'relu' is not supported"):
    hf_import.load_hf_model(folder)
  json.dump([config], open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match="config.json holds a JSON list; expected an object of config fields"):
    hf_import.load_hf_model(folder)
  json.dump({**config, "hidden_size": "32"}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match=r"field\(s\) \['hidden_size'\] hold numbers as strings; sizes must be JSON num"):
    hf_import.load_hf_model(folder)
  json.dump({**config, "max_position_embeddings": 8.5}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match="it gives the model's max_len = 8.5; expected an integer"):
    hf_import.load_hf_model(folder)
  del config["num_attention_heads"]
  json.dump(config, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match="field 'num_attention_heads' is missing"):
    hf_import.load_hf_model(folder)
  open(weights, "wb").write(b"\x05")
  json.dump({**config, "num_attention_heads": 4}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match="model.safetensors is not a readable safetensors file"):
    hf_import.load_hf_model(folder)
  header = b'["not", "a", "header"]'
  open(weights, "wb").write(len(header).to_bytes(8, "little") + header + bytes(range(256)))
  with pytest.raises(IMLError, match="model.safetensors is not a readable safetensors file"):
    hf_import.load_hf_model(folder)
  garbage = np.random.default_rng(0).bytes(4096)  # its first 8 bytes claim a header of exabytes
  open(weights, "wb").write(garbage)
  with pytest.raises(
    IMLError,
    match=rf"model.safetensors is not a readable safetensors file \(ValueError: its header claims "
    rf"{int.from_bytes(garbage[:8], 'little'):,} bytes, but the file has 4,096\)",
  ):
    hf_import.load_hf_model(folder)
  header = json.dumps({"gpt_neox.embed_in.weight": {"dtype": "F32", "shape": [71, 32], "data_offsets": [0, 9088]}})
  open(weights, "wb").write(len(header).to_bytes(8, "little") + header.encode() + bytes(64))  # cut short
  with pytest.raises(
    IMLError, match=r"tensor 'gpt_neox.embed_in.weight' \(F32 \[71, 32\]\) does not fit its data_offsets"
  ):
    hf_import.load_hf_model(folder)


def test_export_refuses_what_the_family_cannot_express(tmp_path):
  cfg = registry.make_config("gpt2", vocab_size=VOCAB, d_model=32, n_heads=4, position_embedding="rotary")
  params = registry.abstract_params(registry.build(cfg))
  with pytest.raises(IMLError, match=r"gpt2 checkpoint: its fields \['position_embedding'"):
    hf_import.export_hf_model(str(tmp_path / "out"), cfg, params)
  assert not os.path.exists(tmp_path / "out")


T5_CONFIGS = {
  "t5_v1_0_relu_tied_scaled": dict(feed_forward_proj="relu"),
  "t5_v1_1_gated_gelu_untied": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
  "t5_v1_1_deeper_decoder": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_decoder_layers=3),
}


def _tiny_t5(tmp_path, name):
  options = T5_CONFIGS[name]
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(
    transformers.T5Config(
      **TINY,
      d_model=32,
      d_kv=8,
      d_ff=48,
      num_layers=2,
      num_heads=4,
      relative_attention_num_buckets=8,
      relative_attention_max_distance=20,
      decoder_start_token_id=0,
      pad_token_id=0,
      eos_token_id=1,
      **options,
    )
  ).eval()
  folder = tmp_path / "t5"
  model.save_pretrained(folder)
  if options.get("tie_word_embeddings") is False:
    # As on the hub, a v1.1 checkpoint stores its own lm_head (transformers 5 saves only the shared one).
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    save_file(
      {**weights, "lm_head.weight": torch.randn(VOCAB, 32)}, folder / "model.safetensors", metadata={"format": "pt"}
    )
    config = json.load(open(folder / "config.json"))
    json.dump({**config, "tie_word_embeddings": False}, open(folder / "config.json", "w"))
    model = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
  return model, str(folder)


def _seq2seq_batch():
  rng = np.random.default_rng(0)
  inputs = rng.integers(2, VOCAB, size=(3, 14))
  mask = np.ones_like(inputs)
  mask[1, 9:] = 0  # right padding in one row
  inputs[1, 9:] = 0
  decoder_inputs = rng.integers(2, VOCAB, size=(3, 7))
  decoder_inputs[:, 0] = 0
  return inputs, mask, decoder_inputs


def _t5_torch_logits(model, inputs, mask, decoder_inputs):
  with torch.no_grad():
    return model(
      input_ids=torch.tensor(inputs), attention_mask=torch.tensor(mask), decoder_input_ids=torch.tensor(decoder_inputs)
    ).logits.numpy()


@pytest.mark.parametrize("name", T5_CONFIGS)
def test_t5_logits_match_pytorch(tmp_path, name):
  model, folder = _tiny_t5(tmp_path, name)
  cfg, params = hf_import.load_hf_model(folder)
  assert cfg.tie_embeddings == (T5_CONFIGS[name].get("tie_word_embeddings") is not False)
  inputs, mask, decoder_inputs = _seq2seq_batch()
  ours = T5(cfg).apply(
    {"params": params}, jnp.asarray(inputs), jnp.asarray(mask.astype(bool)), jnp.asarray(decoder_inputs)
  )
  np.testing.assert_allclose(np.asarray(ours), _t5_torch_logits(model, inputs, mask, decoder_inputs), atol=1e-4)


@pytest.mark.parametrize("name", ["t5_v1_0_relu_tied_scaled", "t5_v1_1_gated_gelu_untied"])
def test_t5_greedy_generation_matches_pytorch(tmp_path, name):
  model, folder = _tiny_t5(tmp_path, name)
  cfg, params = hf_import.load_hf_model(folder)
  inputs, mask, _ = _seq2seq_batch()
  with torch.no_grad():
    reference = model.generate(
      torch.tensor(inputs), attention_mask=torch.tensor(mask), max_new_tokens=16, do_sample=False, eos_token_id=None
    ).numpy()[:, 1:]
  ours = greedy_decode_seq2seq(T5(cfg), params, jnp.asarray(inputs), jnp.asarray(mask.astype(bool)), 16, eos_id=-1)
  np.testing.assert_array_equal(np.asarray(ours), reference)


@pytest.mark.parametrize("name", ["t5_v1_0_relu_tied_scaled", "t5_v1_1_gated_gelu_untied"])
def test_t5_export_round_trip_loads_in_pytorch(tmp_path, name):
  model, folder = _tiny_t5(tmp_path, name)
  cfg, params = hf_import.load_hf_model(folder)
  hf_import.export_hf_model(str(tmp_path / "exported"), cfg, params)
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(str(tmp_path / "exported")).eval()
  batch = _seq2seq_batch()
  np.testing.assert_allclose(_t5_torch_logits(reloaded, *batch), _t5_torch_logits(model, *batch), atol=1e-5)


def _pretrained_folder(tmp_path, vocab_size, seq2seq=False):
  """A tiny HF GPT-NeoX (or T5) with its own tokenizer, saved like a hub checkpoint."""
  from iml_jax.data.tokenization import byte_level_bpe_tokenizer

  texts = [f"Q: When was <|ab{c}de|> born?\nA: 19{d}0s\n" for c in "abcdefgh" for d in range(10)]
  tokenizer = transformers.PreTrainedTokenizerFast(
    tokenizer_object=byte_level_bpe_tokenizer(texts, 300).backend, eos_token="<|endoftext|>"
  )
  torch.manual_seed(0)
  if seq2seq:
    model = transformers.T5ForConditionalGeneration(
      transformers.T5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=8,
        d_ff=48,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=0,
      )
    )
  else:
    model = transformers.GPTNeoXForCausalLM(
      transformers.GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
      )
    )
  folder = tmp_path / "model-tiny"
  model.save_pretrained(folder)
  tokenizer.save_pretrained(folder)
  return str(folder)


def _define_config(folder):
  from test_experiment import ROOT, load_config

  config = load_config(os.path.join(ROOT, "configs", "define_synthetic.py"), "tiny")
  config.progress_bar = False
  config.model.update(init_from=folder, d_model=32, n_layers=2, n_heads=4, d_mlp=64)
  config.data.block_size = 96  # this tokenizer saw little text: long encodings
  return config


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_pipeline_starts_from_pretrained_weights_and_tokenizer(tmp_path, monkeypatch):
  from iml_jax import experiment, train

  folder = _pretrained_folder(tmp_path, vocab_size=320)
  created = []
  original = train.create_state

  def recording(model, optimizer, abstract, rng, params=None, initializer=None):
    created.append(None if params is None else {k: np.asarray(v) for k, v in params["embed_in"].items()})
    return original(model, optimizer, abstract, rng, params, initializer)

  monkeypatch.setattr(train, "create_state", recording)
  config = _define_config(folder)
  config.model.update(scan_layers=True, vocab_multiple=128)  # the checkpoint's layers stacked, its 320 rows padded
  summary = experiment.run(config, str(tmp_path / "run"))
  _, hf_params = hf_import.load_hf_model(folder)
  np.testing.assert_array_equal(created[0]["embedding"][:320], hf_params["embed_in"]["embedding"])
  np.testing.assert_array_equal(created[0]["embedding"][320:], 0.0)
  assert created[0]["embedding"].shape == (384, 32)
  assert "d1consis" in summary["subsets"]
  from iml_jax.export_hf import export_stage

  export_stage(str(tmp_path / "run"), "seed_0/s2seed_0/stage2", str(tmp_path / "finetuned"))
  finetuned = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path / "finetuned")
  assert finetuned.config.vocab_size == 320 and finetuned.config.num_hidden_layers == 2
  assert not torch.equal(finetuned.gpt_neox.embed_in.weight, torch.tensor(hf_params["embed_in"]["embedding"]))
  assert transformers.AutoTokenizer.from_pretrained(tmp_path / "finetuned").vocab_size == 300


def test_pretrained_mismatches_are_clear(tmp_path):
  from iml_jax import experiment

  folder = _pretrained_folder(tmp_path, vocab_size=200)  # fewer rows than the 300-token tokenizer
  with pytest.raises(IMLError, match="the tokenizer in .* has 300 tokens, but the model's embedding has only 200"):
    experiment.run(_define_config(folder), str(tmp_path / "run"))
  config = _define_config(folder)
  config.model.update(d_model=64, n_layers=3, n_heads=8)
  with pytest.raises(IMLError) as every_mismatch:  # all in one message: one rerun fixes them
    experiment.run(config, str(tmp_path / "run2"))
  assert re.fullmatch(
    r"config field\(s\) model.d_model = 64 \(it has 32\), model.n_layers = 3 \(it has 2\), model.n_heads = 8 "
    r"\(it has 4\) differ from .*/model-tiny/config.json; set them to its values",
    str(every_mismatch.value),
  ), every_mismatch.value
  config.model.init_from = str(tmp_path / "nowhere")
  with pytest.raises(IMLError, match="no such local folder"):
    experiment.run(config, str(tmp_path / "run3"))


# slow (more than a minute on 2 cores with the suite running): run with `-m slow`
@pytest.mark.slow
def test_t5_pipeline_trains_and_evaluates_seq2seq_from_pretrained(tmp_path, monkeypatch):
  from iml_jax import config_blocks as blocks
  from iml_jax import experiment, train

  folder = _pretrained_folder(tmp_path, vocab_size=320, seq2seq=True)
  created = []
  original = train.create_state

  def recording(model, optimizer, abstract, rng, params=None, initializer=None):
    created.append(None if params is None else np.asarray(params["shared"]["embedding"]))
    return original(model, optimizer, abstract, rng, params, initializer)

  monkeypatch.setattr(train, "create_state", recording)
  config = _define_config(folder)
  config.model = blocks.language_model("t5", init_from=folder, d_model=32, d_kv=8, d_ff=48, n_heads=4, n_layers=2)
  config.data.label_block_size = 32  # this tokenizer saw little text: long encodings
  summary = experiment.run(config, str(tmp_path / "run"))
  _, hf_params = hf_import.load_hf_model(folder)
  np.testing.assert_array_equal(created[0], hf_params["shared"]["embedding"])
  assert {"d1consis", "d2consis"} <= set(summary["subsets"])
  predictions = [
    json.loads(line) for line in open(tmp_path / "run" / "seed_0" / "s2seed_0" / "stage2" / "predictions.jsonl")
  ]
  assert predictions and all({"prompt", "answer", "prediction"} <= set(p) for p in predictions)
  config.model.name = "gpt_neox"
  with pytest.raises(IMLError, match="do not apply to model.name = 'gpt_neox'"):
    experiment.run(config, str(tmp_path / "run2"))
