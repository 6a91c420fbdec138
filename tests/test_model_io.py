"""Each kind of model gets its own encoding: decoder-only one sequence, T5 inputs and targets, array models the
task's arrays; the alias tokens are left out of the loss only where the config says so."""

import types

import numpy as np

from iml_jax import model_io, specs
from iml_jax.data.common import Example
from iml_jax.data.tokenization import word_level_tokenizer
from iml_jax.models import registry

EXAMPLES = [Example("abc % 7 8 =", " true"), Example("define1 abc %", " 9")]
CONFIG = types.SimpleNamespace(
  data=types.SimpleNamespace(block_size=8, label_block_size=3),
  loss=specs.Loss(mask_prompt=False, mask_padding=True, exclude_alias_tokens=False),
  eval=specs.Evaluation(prompt_bucket=4, batch_size=2, max_new_tokens=2, subsets="all"),
)


def _inputs(name: str, **fields):
  model = registry.build(registry.make_config(name, **fields))
  tokenizer = word_level_tokenizer(["[PAD]", "[UNK]", "=", "%", "true", "define1", "abc", "7", "8", "9"])
  return model_io.for_model(model, CONFIG, task=None, tokenizer=tokenizer), tokenizer


def test_a_decoder_reads_one_sequence_and_leaves_out_the_excluded_tokens():
  inputs, tokenizer = _inputs("gpt_neox", vocab_size=12, d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=8)
  assert type(inputs) is model_io.TokenInputs
  alias = tokenizer.token_ids(["abc"])
  kept, excluded = inputs.encode(EXAMPLES, None), inputs.encode(EXAMPLES, alias)
  assert set(kept) == {"tokens", "loss_mask"} and kept["tokens"].shape == (2, 8)
  assert inputs.tokens_per_example(kept) == 8
  # the alias is the first token of both texts: its target position (0 after the shift) only loses its weight
  at_alias = kept["tokens"][:, 1:] == alias[0]
  assert kept["loss_mask"][at_alias].all() and not excluded["loss_mask"][at_alias].any()
  np.testing.assert_array_equal(kept["loss_mask"][~at_alias], excluded["loss_mask"][~at_alias])


def test_an_encoder_decoder_reads_inputs_and_targets():
  inputs, _ = _inputs("t5", vocab_size=12, d_model=8, d_kv=4, d_ff=16, n_heads=2, n_layers=1)
  assert type(inputs) is model_io.Seq2SeqInputs
  encoded = inputs.encode(EXAMPLES, None)
  assert encoded["inputs"].shape == (2, 8) and encoded["targets"].shape == (2, 3)
  assert inputs.tokens_per_example(encoded) == 11
  assert inputs.eval_sets({"qa": EXAMPLES}, ["qa"])[0].prompt_mask is not None


def test_an_array_model_reads_the_task_arrays():
  class Task:
    def encode_arrays(self, examples):
      return {"inputs": np.ones((len(examples), 3), np.float32)}

  model = registry.build(registry.make_config("mlp", in_features=3, out_features=2, hidden=4, n_layers=1))
  inputs = model_io.for_model(model, CONFIG, Task(), tokenizer=None)
  assert type(inputs) is model_io.ArrayInputs
  assert inputs.encode(EXAMPLES, np.array([1]))["inputs"].shape == (2, 3)
  assert inputs.tokens_per_example(inputs.encode(EXAMPLES)) == 0


def test_the_array_shapes_known_before_any_data_are_those_encode_gives():
  """What tpu_plan lowers the train step on: each array's row shape and dtype, from the config alone."""
  for name, fields in (
    ("gpt_neox", dict(vocab_size=12, d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=8)),
    ("t5", dict(vocab_size=12, d_model=8, d_kv=4, d_ff=16, n_heads=2, n_layers=1)),
  ):
    inputs, _ = _inputs(name, **fields)
    encoded = inputs.encode(EXAMPLES, None)
    expected = {k: (v.shape[1:], v.dtype) for k, v in encoded.items()}
    shapes = model_io.kind_of(registry.build(registry.make_config(name, **fields))).array_shapes(CONFIG.data)
    assert {k: (row, np.dtype(dtype)) for k, (row, dtype) in shapes.items()} == expected, name
