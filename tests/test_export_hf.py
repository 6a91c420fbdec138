"""A finished stage exported through the CLI loads in PyTorch transformers and computes our logits."""

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from iml_jax import experiment, io_utils, stage
from iml_jax.data.tokenization import TextTokenizer
from iml_jax.models import from_config, registry
from iml_jax.specs import Experiment
from iml_jax.models.decoder import causal_inputs
from test_experiment import ROOT, tiny_config

STAGE = os.path.join("seed_0", "s2seed_0", "stage2")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  config = tiny_config(n_seeds=1)
  config.model.vocab_multiple = 128  # a padded vocabulary, which the export removes
  experiment.run(config, str(workdir))
  return workdir, config


def _export(workdir, out, stage_label=STAGE):
  return subprocess.run(
    [sys.executable, "-m", "iml_jax.export_hf", f"--workdir={workdir}", f"--stage={stage_label}", f"--out={out}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )


def test_exported_stage_loads_in_transformers_with_our_logits(finished_run, tmp_path):
  workdir, config = finished_run
  result = _export(workdir, tmp_path / "hf")
  assert result.returncode == 0, result.stderr
  modes = {name: os.stat(tmp_path / "hf" / name).st_mode & 0o777 for name in os.listdir(tmp_path / "hf")}
  assert "model.safetensors" in modes and set(modes.values()) == {io_utils.FILE_MODE}, modes  # as open() makes them
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
  hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
  tokenizer = TextTokenizer.load(str(workdir / "seed_0" / "tokenizer.json"))
  text = " ".join(tokenizer.backend.id_to_token(i) for i in range(5, 15))
  assert hf_tokenizer(text, add_special_tokens=False)["input_ids"] == tokenizer.encode([text])[0]

  spec = Experiment.from_config(config)
  cfg = from_config.model_config(spec.model, spec.data, spec.mesh, tokenizer, None, None)
  assert cfg.vocab_size % 128 == 0 and cfg.valid_vocab == tokenizer.vocab_size < cfg.vocab_size
  assert hf_model.config.vocab_size == tokenizer.vocab_size
  model = registry.build(cfg)
  abstract = registry.abstract_params(model)
  params = stage.final_params(str(workdir / STAGE), abstract)
  tokens = np.random.default_rng(0).integers(0, cfg.valid_vocab, size=(2, 9))
  ours, _ = model.apply({"params": params}, jnp.asarray(tokens), *causal_inputs(jnp.asarray(tokens)))
  with torch.no_grad():
    theirs = hf_model(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(np.asarray(ours)[..., : cfg.valid_vocab], theirs, atol=1e-4)
  assert np.all(np.asarray(ours)[..., cfg.valid_vocab :] == np.finfo(np.float32).min)


def test_export_refuses_to_overwrite_and_unfinished_stages(finished_run, tmp_path):
  workdir, _ = finished_run
  (tmp_path / "taken").mkdir()
  (tmp_path / "taken" / "keep.txt").write_text("results")
  result = _export(workdir, tmp_path / "taken")
  assert result.returncode == 2 and "exists and is not empty" in result.stderr
  assert (tmp_path / "taken" / "keep.txt").read_text() == "results"
  result = _export(workdir, tmp_path / "new", stage_label="seed_0/s2seed_0/stage9")
  assert result.returncode == 2 and "has not finished (no DONE marker)" in result.stderr
  assert not (tmp_path / "new").exists()
  result = _export(tmp_path, tmp_path / "new")
  assert result.returncode == 2 and "config.json does not exist" in result.stderr
