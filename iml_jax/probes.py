"""Linear probes on hidden states (docs/study.md §10): can the tag an alias was defined with be read off the
residual stream while the model reads a question about the alias?

Features: the residual stream after every block at every token position (decoder-only models: the
question as a prompt; T5: the encoder reading it). Two classes of equally long questions, one per alias;
scikit-learn's L2 logistic regression (C = 0.01) with 5-fold cross-validated accuracy per
(position, layer), as the study.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score

from iml_jax.errors import IMLError
from iml_jax.models import registry


@functools.partial(jax.jit, static_argnames=("model",))
def hidden_states(model, params, tokens_BxT: jax.Array) -> jax.Array:
  """[layers, B, T, D]: the residual stream after every block (T5: of the encoder, all tokens valid)."""
  return registry.spec_of(model).hidden_states(model, params, tokens_BxT).astype(jnp.float32)


def one_question_per_alias(examples: list, aliases_in) -> list:
  """The first question about each alias: an alias in two folds would let a probe recognise the alias
  instead of reading the tag."""
  seen, kept = set(), []
  for example in examples:
    key = tuple(aliases_in(example))
    if key not in seen:
      seen.add(key)
      kept.append(example)
  return kept


def equal_length_questions(tokenizer, class_a: list, class_b: list) -> tuple[np.ndarray, np.ndarray]:
  """Token ids [N, T] and labels [N] of the prompts of both classes that have the most common length
  (so every position means the same thing), truncated to equal class sizes (chance = 0.5)."""
  encoded = [tokenizer.encode([ex.prompt for ex in examples]) for examples in (class_a, class_b)]
  lengths = [len(ids) for group in encoded for ids in group]
  if not lengths:
    raise IMLError("the probe classes hold no questions")
  length = max(set(lengths), key=lambda n: (lengths.count(n), -n))
  kept = [[ids for ids in group if len(ids) == length] for group in encoded]
  size = min(len(k) for k in kept)
  if size < 5:
    raise IMLError(f"only {size} questions per class have the common length {length}; the 5-fold probe needs >= 5")
  tokens = np.array(kept[0][:size] + kept[1][:size], dtype=np.int32)
  return tokens, np.array([0] * size + [1] * size)


def probe_accuracy(features_LxNxTxD: np.ndarray, labels: np.ndarray, c: float = 0.01, folds: int = 5) -> np.ndarray:
  """Cross-validated accuracy [T, L] of a logistic-regression probe per (position, layer)."""
  n_layers, _, n_positions, _ = features_LxNxTxD.shape
  splits = StratifiedKFold(folds, shuffle=True, random_state=0)
  accuracy = np.zeros((n_positions, n_layers))
  for layer in range(n_layers):
    for position in range(n_positions):
      probe = LogisticRegression(C=c, max_iter=1000, random_state=0)
      accuracy[position, layer] = cross_val_score(probe, features_LxNxTxD[layer, :, position], labels, cv=splits).mean()
  return accuracy
