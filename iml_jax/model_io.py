"""How each kind of model reads a task's examples (`ModelSpec.inputs` in models/registry.py), one class per
kind: the arrays of a training batch, the evaluation sets and how they are scored. The stage loop and the
analyses go through these, so none of them asks which model it runs."""

import numpy as np

from iml_jax import evaluate
from iml_jax.data.tokenization import encode_for_training, encode_seq2seq
from iml_jax.models import registry


class TokenInputs:
  """A decoder-only model: prompt and answer in one right-padded token sequence (`tokens`, `loss_mask`);
  evaluated by greedy continuation of the left-padded prompts, scored by EM and F1."""

  seq2seq = False  # eval prompts right-padded with a mask (an encoder reads them) instead of left-padded

  def __init__(self, data, loss, evaluation, task, tokenizer):
    """`data`: the task's data spec (its block sizes); `loss`, `evaluation`: specs.Loss, specs.Evaluation."""
    self.data, self.loss, self.evaluation, self.task, self.tokenizer = data, loss, evaluation, task, tokenizer

  def encode(self, examples, excluded_ids: np.ndarray | None) -> dict[str, np.ndarray]:
    """Training arrays; the loss mask leaves out the tokens `excluded_ids` (None: none)."""
    loss = self.loss
    encoded = encode_for_training(
      self.tokenizer, examples, self.data.block_size, loss.mask_prompt, loss.mask_padding, excluded_ids
    )
    return {"tokens": encoded.tokens, "loss_mask": encoded.loss_mask}

  @staticmethod
  def array_shapes(data) -> dict[str, tuple[tuple[int, ...], type]]:
    """The shape of one example's row and the dtype of each array `encode` gives, known before any data."""
    block = data.block_size
    return {"tokens": ((block,), np.int32), "loss_mask": ((block - 1,), np.float32)}

  def tokens_per_example(self, encoded: dict) -> int:
    """Token positions an encoded example occupies, padding included."""
    return encoded["tokens"].shape[1]

  def eval_sets(self, evals: dict, names: list[str]) -> list:
    return evaluate.prepare_eval_sets(
      self.tokenizer, evals, names, self.evaluation.prompt_bucket, self.data.block_size, self.seq2seq
    )

  def evaluate(self, model, params, eval_sets: list, mesh, rules) -> dict[str, dict]:
    return evaluate.evaluate(
      model,
      params,
      self.tokenizer,
      eval_sets,
      self.evaluation.batch_size,
      self.evaluation.max_new_tokens,
      mesh,
      rules,
    )


class Seq2SeqInputs(TokenInputs):
  """An encoder–decoder: the prompt as right-padded `inputs` with their mask, the answer as `targets`."""

  seq2seq = True

  def encode(self, examples, excluded_ids: np.ndarray | None) -> dict[str, np.ndarray]:
    data = self.data
    return encode_seq2seq(
      self.tokenizer, examples, data.block_size, data.label_block_size, self.loss.mask_padding, excluded_ids
    )

  @staticmethod
  def array_shapes(data) -> dict[str, tuple[tuple[int, ...], type]]:
    inputs, targets = (data.block_size,), (data.label_block_size,)
    return {
      "inputs": (inputs, np.int32),
      "input_mask": (inputs, np.bool_),
      "targets": (targets, np.int32),
      "loss_mask": (targets, np.float32),
    }

  def tokens_per_example(self, encoded: dict) -> int:
    return encoded["inputs"].shape[1] + encoded["targets"].shape[1]


class ArrayInputs:
  """An image or feature model: the task turns examples into `inputs`, `targets` and `loss_mask` and scores the
  predictions (no tokenizer, nothing excluded from the loss)."""

  def __init__(self, data, loss, evaluation, task, tokenizer=None):
    self.evaluation, self.task = evaluation, task

  def encode(self, examples, excluded_ids=None) -> dict[str, np.ndarray]:
    return self.task.encode_arrays(examples)

  def tokens_per_example(self, encoded: dict) -> int:
    return 0

  def eval_sets(self, evals: dict, names: list[str]) -> list:
    return [evaluate.ArrayEvalSet(name, evals[name], self.task.encode_arrays(evals[name])) for name in names]

  def evaluate(self, model, params, eval_sets: list, mesh, rules) -> dict[str, dict]:
    return evaluate.evaluate_arrays(
      model, params, eval_sets, self.evaluation.batch_size, mesh, rules, self.task.score_arrays
    )


_KINDS = {"tokens": TokenInputs, "seq2seq": Seq2SeqInputs, "arrays": ArrayInputs}


def for_model(model, experiment, task, tokenizer):
  """How `model` reads `task`'s examples under `experiment` (specs.Experiment: its data, loss and evaluation)."""
  return _KINDS[registry.spec_of(model).inputs](experiment.data, experiment.loss, experiment.eval, task, tokenizer)


def kind_of(model):
  """The class that says how `model` reads examples (its `array_shapes` need no task)."""
  return _KINDS[registry.spec_of(model).inputs]
