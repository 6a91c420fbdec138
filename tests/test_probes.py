import jax
import jax.numpy as jnp
import numpy as np
import pytest

from iml_jax import probes
from iml_jax.data.common import Example
from iml_jax.data.tokenization import word_level_tokenizer
from iml_jax.errors import IMLError
from iml_jax.models import registry
from iml_jax.models.decoder import causal_inputs
from iml_jax.train import unbox


def _features(rng, n=60, layers=2, positions=3, width=8):
  return rng.normal(size=(layers, n, positions, width)), np.array([0, 1] * (n // 2))


def test_probe_finds_a_planted_feature_and_only_there():
  rng = np.random.default_rng(0)
  features, labels = _features(rng)
  features[1, :, 2, 5] += 3.0 * labels  # layer 2, position 3, one direction
  accuracy = probes.probe_accuracy(features, labels, c=1.0)
  assert accuracy.shape == (3, 2)
  assert accuracy[2, 1] > 0.9
  assert accuracy[0, 0] < 0.75 and accuracy[1, 0] < 0.75


def test_probe_sits_at_chance_on_shuffled_labels():
  rng = np.random.default_rng(1)
  features, labels = _features(rng, n=200)
  features[:, :, :, 0] += 3.0 * labels[None, :, None]
  shuffled = rng.permutation(labels)
  assert abs(probes.probe_accuracy(features, shuffled, c=0.01).mean() - 0.5) < 0.08


def test_hidden_states_are_the_residual_stream_the_logits_come_from():
  cfg = registry.make_config(
    "gpt_neox", vocab_size=20, d_model=16, n_layers=3, n_heads=2, d_mlp=32, max_len=8, init_std=0.3
  )
  model = registry.build(cfg)
  params = unbox(registry.init_params(model, jax.random.key(0)))
  tokens = jax.random.randint(jax.random.key(1), (4, 6), 0, 20)
  states = probes.hidden_states(model, params, tokens)
  assert states.shape == (3, 4, 6, 16)
  logits, _ = model.apply({"params": params}, tokens, *causal_inputs(tokens))
  final = model.apply({"params": params}, states[-1], method=lambda m, x: m.embed_out(m.final_layer_norm(x)))
  np.testing.assert_allclose(final, logits, atol=1e-5)


def test_seq2seq_hidden_states_come_from_the_encoder():
  cfg = registry.make_config("t5", vocab_size=20, d_model=16, d_kv=4, d_ff=32, n_heads=2, n_layers=2)
  model = registry.build(cfg)
  params = unbox(registry.init_params(model, jax.random.key(0)))
  tokens = jax.random.randint(jax.random.key(1), (3, 5), 0, 20)
  states = probes.hidden_states(model, params, tokens)
  encoded = model.apply({"params": params}, tokens, jnp.ones((3, 5), bool), method=model.encode)
  final = model.apply({"params": params}, states[-1], method=lambda m, x: m.encoder.final_layer_norm(x))
  np.testing.assert_allclose(final, encoded, atol=1e-5)


def test_one_question_per_alias_keeps_aliases_out_of_two_folds():
  questions = [Example("abc % 1 2 =", ""), Example("abd % 3 4 =", ""), Example("abc % 5 6 =", "")]
  kept = probes.one_question_per_alias(questions, lambda ex: [ex.prompt.split(" %")[0]])
  assert [ex.prompt for ex in kept] == ["abc % 1 2 =", "abd % 3 4 ="]


def test_questions_are_cut_to_one_length_and_equal_classes():
  words = word_level_tokenizer(["[PAD]", "[UNK]", "a", "b", "c", "%", "="])
  a = [Example("a % =", ""), Example("b % =", ""), Example("a b % =", "")] * 3
  b = [Example("c % =", "")] * 7
  tokens, labels = probes.equal_length_questions(words, a, b)
  assert tokens.shape == (12, 3) and labels.tolist() == [0] * 6 + [1] * 6
  with pytest.raises(IMLError, match="only 2 questions per class"):
    probes.equal_length_questions(words, a[:2], b)
