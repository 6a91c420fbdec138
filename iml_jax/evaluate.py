"""Evaluation over named test sets: batched cached greedy decoding, detokenising, EM/F1 per set; for tasks
whose examples are arrays (vision, the 1-D toy), batched predictions scored by the task.

Decoder-only prompts are left-padded; seq2seq inputs are right-padded with a mask (T5 encodes them once).
"""

import dataclasses
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from iml_jax import metrics, sharding
from iml_jax.data.common import Example
from iml_jax.data.tokenization import TextTokenizer, encode_prompts, encode_seq2seq_inputs
from iml_jax.models import registry


@dataclasses.dataclass
class EvalSet:
  name: str
  examples: list[Example]
  prompts: np.ndarray  # [N, P] token ids: left-padded (decoder-only) or right-padded (seq2seq)
  prompt_mask: np.ndarray | None = None  # [N, P] seq2seq only


def prepare_eval_sets(
  tokenizer: TextTokenizer,
  evals: dict[str, list[Example]],
  names,
  bucket: int,
  max_prompt_length: int,
  seq2seq: bool = False,
) -> list[EvalSet]:
  if seq2seq:
    return [
      EvalSet(name, evals[name], *encode_seq2seq_inputs(tokenizer, evals[name], bucket, max_prompt_length))
      for name in names
    ]
  return [
    EvalSet(name, evals[name], encode_prompts(tokenizer, evals[name], bucket, max_prompt_length)) for name in names
  ]


def generate(
  model,
  params,
  prompts: np.ndarray,
  batch_size: int,
  max_new_tokens: int,
  eos_id: int,
  mesh,
  rules,
  prompt_mask: np.ndarray | None = None,
) -> np.ndarray:
  """Greedy continuations [N, max_new_tokens]; the last batch is padded with empty prompts."""
  n = len(prompts)
  padded = -(-n // batch_size) * batch_size
  rows = np.full((padded, prompts.shape[1]), eos_id, np.int32)
  rows[:n] = prompts
  if prompt_mask is not None:  # seq2seq: the encoder's mask; an empty input still attends to one slot
    mask_rows = np.zeros(rows.shape, bool)
    mask_rows[:, 0] = True
    mask_rows[:n] = prompt_mask
  layout = sharding.batch_sharding(mesh, rules, 2)
  outputs = []
  for start in range(0, padded, batch_size):
    batch = sharding.put_global_batch(rows[start : start + batch_size], layout)
    mask = None if prompt_mask is None else sharding.put_global_batch(mask_rows[start : start + batch_size], layout)
    out = registry.spec_of(model).generate(model, params, batch, mask, max_new_tokens, eos_id)
    outputs.append(np.asarray(multihost_utils.process_allgather(out, tiled=True)))
  return np.concatenate(outputs)[:n]


def evaluate(
  model, params, tokenizer: TextTokenizer, eval_sets: list[EvalSet], batch_size: int, max_new_tokens: int, mesh, rules
) -> dict[str, dict]:
  """{set name: {"em", "f1", "predictions"}}. Sets with equal prompt width share batches."""
  by_width: dict[int, list[EvalSet]] = {}
  for eval_set in eval_sets:
    by_width.setdefault(eval_set.prompts.shape[1], []).append(eval_set)
  results = {}
  for group in by_width.values():
    masks = None if group[0].prompt_mask is None else np.concatenate([s.prompt_mask for s in group])
    generated = generate(
      model,
      params,
      np.concatenate([s.prompts for s in group]),
      batch_size,
      max_new_tokens,
      tokenizer.pad_id,
      mesh,
      rules,
      masks,
    )
    offset = 0
    for eval_set in group:
      texts = [tokenizer.decode(row).strip() for row in generated[offset : offset + len(eval_set.examples)]]
      offset += len(eval_set.examples)
      em, f1 = metrics.mean_em_f1(texts, [ex.answer for ex in eval_set.examples])
      results[eval_set.name] = {"em": em, "f1": f1, "predictions": texts}
  return {s.name: results[s.name] for s in eval_sets}


@dataclasses.dataclass
class ArrayEvalSet:
  """An eval set of a task whose examples are arrays (images, feature vectors), not text."""

  name: str
  examples: list
  arrays: dict[str, np.ndarray]  # inputs [N, ...], targets and loss_mask [N, outputs]


def evaluate_arrays(
  model, params, eval_sets: list[ArrayEvalSet], batch_size: int, mesh, rules, score: Callable[[dict, np.ndarray], dict]
) -> dict[str, dict]:
  """{set name: score(arrays, predictions)} of an array model; the last batch is padded with zeros."""
  jitted = jax.jit(registry.predict, static_argnums=0)
  results = {}
  for eval_set in eval_sets:
    inputs = eval_set.arrays["inputs"]
    layout = sharding.batch_sharding(mesh, rules, inputs.ndim)
    n = len(inputs)
    padded = np.zeros((-(-n // batch_size) * batch_size,) + inputs.shape[1:], inputs.dtype)
    padded[:n] = inputs
    predicted = np.concatenate(
      [
        np.asarray(
          multihost_utils.process_allgather(
            jitted(model, params, sharding.put_global_batch(padded[i : i + batch_size], layout)), tiled=True
          )
        )
        for i in range(0, len(padded), batch_size)
      ]
    )[:n]
    results[eval_set.name] = score(eval_set.arrays, predicted)
  return results
