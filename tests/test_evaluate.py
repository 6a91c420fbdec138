"""Evaluation batches padded to the device count: every example counts once, padding changes nothing."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from iml_jax import evaluate, sharding
from iml_jax.models.decoder import DecoderConfig, DecoderLM, init_params
from iml_jax.models.registry import unbox

EOS = 0


@pytest.fixture(scope="module")
def model_and_prompts():
  model = DecoderLM(
    DecoderConfig(
      vocab_size=23, d_model=32, n_layers=2, n_heads=4, d_mlp=64, max_len=16, init_std=0.3, embedding_init_std=0.3
    )
  )
  params = unbox(init_params(model, jax.random.key(0)))
  rng = np.random.default_rng(0)
  prompts = rng.integers(1, 23, size=(13, 6)).astype(np.int32)
  for row, pad in enumerate(rng.integers(0, 5, size=13)):
    prompts[row, :pad] = EOS  # left padding of shorter prompts
  return model, params, prompts


def test_padded_sharded_batches_equal_one_prompt_at_a_time(model_and_prompts):
  model, params, prompts = model_and_prompts
  rules = sharding.rules_for("dp")
  one_device = Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), sharding.MESH_AXES)
  alone = evaluate.generate(model, params, prompts, 1, 5, EOS, one_device, rules)
  assert alone.shape == (13, 5)
  for batch_size in (8, 16):  # 13 prompts: 3 and 11 padding rows over 8 devices
    padded = evaluate.generate(model, params, prompts, batch_size, 5, EOS, sharding.make_mesh((8, 1, 1)), rules)
    np.testing.assert_array_equal(padded, alone)
  assert len(np.unique(alone[:, 0])) > 1  # the prompts really lead to different continuations


def test_metrics_count_every_example_once(model_and_prompts):
  model, params, prompts = model_and_prompts

  class Tokenizer:
    pad_id = EOS

    @staticmethod
    def decode(row):
      return " ".join(str(t) for t in row if t != EOS)

  alone = evaluate.generate(model, params, prompts, 1, 5, EOS, sharding.make_mesh((1, 1, 8)), sharding.rules_for("dp"))
  answers = [Tokenizer.decode(row) if i % 3 else "wrong" for i, row in enumerate(alone)]
  examples = [type("Example", (), {"answer": a})() for a in answers]
  eval_set = evaluate.EvalSet("set", examples, prompts)
  results = evaluate.evaluate(
    model, params, Tokenizer, [eval_set], 8, 5, sharding.make_mesh((8, 1, 1)), sharding.rules_for("dp")
  )["set"]
  assert results["em"] == pytest.approx(8 / 13)  # rows 0, 3, 6, 9, 12 are wrong; padding rows count nowhere
  assert len(results["predictions"]) == 13
