"""GPT-NeoX import/export against tiny random transformers PyTorch models built here (no downloads)."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch  # the CPU wheel, from the [test] extra
import transformers

from iml_jax import hf_import
from iml_jax.errors import IMLError
from iml_jax.models.decoding import greedy_decode
from iml_jax.models.gpt_neox import GPTNeoX

torch.set_num_threads(1)
NEOX_CONFIGS = {
    "pythia_parallel_partial_rotary": dict(rotary_pct=0.25, use_parallel_residual=True),
    "sequential_full_rotary": dict(rotary_pct=1.0, use_parallel_residual=False, rotary_emb_base=500.0),
}


def _tiny_neox(tmp_path, **options):
  torch.manual_seed(0)
  config = transformers.GPTNeoXConfig(vocab_size=71, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=64, **options)
  model = transformers.GPTNeoXForCausalLM(config).eval()
  model.save_pretrained(tmp_path / "hf")
  return model, str(tmp_path / "hf")


def _batch():
  tokens = np.random.default_rng(0).integers(1, 71, size=(3, 12))
  mask = np.ones_like(tokens)
  mask[1, :4] = 0  # left padding in one row
  tokens[1, :4] = 0
  return tokens, mask


def _flax_logits(cfg, params, tokens, mask):
  valid = mask.astype(bool)
  positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0)
  causal = np.tril(np.ones((tokens.shape[1],) * 2, bool))[None] & valid[:, None, :]
  logits, _ = GPTNeoX(cfg).apply({"params": params}, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(causal))
  return np.asarray(logits)


def _torch_logits(model, tokens, mask):
  positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  with torch.no_grad():
    return model(input_ids=torch.tensor(tokens), attention_mask=torch.tensor(mask),
                 position_ids=torch.tensor(positions)).logits.numpy()


@pytest.mark.parametrize("options", NEOX_CONFIGS.values(), ids=NEOX_CONFIGS)
def test_logits_match_pytorch(tmp_path, options):
  model, folder = _tiny_neox(tmp_path, **options)
  cfg, params = hf_import.load_hf_gpt_neox(folder)
  tokens, mask = _batch()
  ours, reference = _flax_logits(cfg, params, tokens, mask), _torch_logits(model, tokens, mask)
  valid = mask.astype(bool)
  np.testing.assert_allclose(ours[valid], reference[valid], atol=1e-4)


def test_greedy_generation_matches_pytorch(tmp_path):
  model, folder = _tiny_neox(tmp_path, rotary_pct=0.25)
  cfg, params = hf_import.load_hf_gpt_neox(folder)
  prompts = np.random.default_rng(1).integers(3, 71, size=(4, 6))
  with torch.no_grad():
    reference = model.generate(torch.tensor(prompts), max_new_tokens=16, do_sample=False, eos_token_id=None,
                               pad_token_id=0).numpy()[:, 6:]
  ours = np.asarray(greedy_decode(GPTNeoX(cfg), params, jnp.asarray(prompts), 16, eos_id=-1))
  np.testing.assert_array_equal(ours, reference)


def test_export_round_trip_loads_in_pytorch(tmp_path):
  model, folder = _tiny_neox(tmp_path, rotary_pct=0.5, use_parallel_residual=False)
  cfg, params = hf_import.load_hf_gpt_neox(folder)
  hf_import.export_hf_gpt_neox(str(tmp_path / "exported"), cfg, params)
  reloaded = transformers.GPTNeoXForCausalLM.from_pretrained(str(tmp_path / "exported")).eval()
  tokens, mask = _batch()
  np.testing.assert_allclose(_torch_logits(reloaded, tokens, mask), _torch_logits(model, tokens, mask), atol=1e-5)


def test_clear_errors(tmp_path):
  with pytest.raises(IMLError, match="config.json does not exist"):
    hf_import.load_hf_gpt_neox(str(tmp_path))
  _, folder = _tiny_neox(tmp_path)
  weights = os.path.join(folder, "model.safetensors")
  torch.save({"x": torch.zeros(1)}, os.path.join(folder, "pytorch_model.bin"))
  os.rename(weights, weights + ".away")
  with pytest.raises(IMLError, match="only pickle weights .*allow_pickle"):
    hf_import.load_hf_gpt_neox(folder)
  os.rename(weights + ".away", weights)
  config = json.load(open(os.path.join(folder, "config.json")))
  json.dump({**config, "model_type": "t5"}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match="model_type 't5' is not supported"):
    hf_import.load_hf_gpt_neox(folder)
  json.dump({**config, "vocab_size": 80}, open(os.path.join(folder, "config.json"), "w"))
  with pytest.raises(IMLError, match=r"gpt_neox.embed_in.weight has shape \(71, 32\), config.json implies \(80, 32\)"):
    hf_import.load_hf_gpt_neox(folder)


def _pretrained_folder(tmp_path, vocab_size):
  """A tiny HF GPT-NeoX with its own tokenizer, saved like a hub checkpoint."""
  from iml_jax.data.tokenization import byte_level_bpe_tokenizer
  texts = [f"Q: When was <|ab{c}de|> born?\nA: 19{d}0s\n" for c in "abcdefgh" for d in range(10)]
  tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=byte_level_bpe_tokenizer(texts, 300).backend,
                                                   eos_token="<|endoftext|>")
  torch.manual_seed(0)
  model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
      vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
      max_position_embeddings=128))
  folder = tmp_path / "pythia-tiny"
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


def test_pipeline_starts_from_pretrained_weights_and_tokenizer(tmp_path, monkeypatch):
  from iml_jax import experiment, train
  folder = _pretrained_folder(tmp_path, vocab_size=320)
  created = []
  original = train.create_state

  def recording(model, optimizer, abstract, rng, params=None):
    created.append(None if params is None else {k: np.asarray(v) for k, v in params["embed_in"].items()})
    return original(model, optimizer, abstract, rng, params)

  monkeypatch.setattr(train, "create_state", recording)
  summary = experiment.run(_define_config(folder), str(tmp_path / "run"))
  _, hf_params = hf_import.load_hf_gpt_neox(folder)
  np.testing.assert_array_equal(created[0]["embedding"], hf_params["embed_in"]["embedding"])
  assert "d1consis" in summary["subsets"]


def test_pretrained_mismatches_are_clear(tmp_path):
  from iml_jax import experiment
  folder = _pretrained_folder(tmp_path, vocab_size=200)  # fewer rows than the 300-token tokenizer
  with pytest.raises(IMLError, match="the tokenizer in .* has 300 tokens, but the model's embedding has only 200"):
    experiment.run(_define_config(folder), str(tmp_path / "run"))
  config = _define_config(folder)
  config.model.d_model = 64
  with pytest.raises(IMLError, match="model.d_model = 64, but .*config.json has 32"):
    experiment.run(config, str(tmp_path / "run2"))
  config.model.init_from = str(tmp_path / "nowhere")
  with pytest.raises(IMLError, match="no such local folder"):
    experiment.run(config, str(tmp_path / "run3"))
