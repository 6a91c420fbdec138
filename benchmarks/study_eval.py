r"""The study's evaluation (docs/study.md §8.1): greedy EM over every eval set of a define experiment's last stage.

The eval sets are the project's own: the define task of `--config` (the offline synthetic knowledge base by
default, with the study's 4,000 entities), its prompts and answers, its tokenizer. One Pythia shape with random
weights, built with `transformers` and imported into iml-jax, answers every prompt with `--max_new_tokens`
greedy tokens on each side, in fp32 as the study evaluates (matmuls at full precision on both sides):
- iml-jax: `evaluate.evaluate` (left-padded prompts bucketed by width, one compiled KV-cache loop per width,
  detokenising, EM per set): what every evaluation of a run calls;
- the original's: `transformers.pipeline("text-generation")` with `return_full_text=False`, batch
  `--batch_size`, left padding, greedy (docs/study.md §8.1);
- batched `generate` on the same left-padded batches, decoded and scored alike.
The sides' predictions are compared before timing (at least 99% identical after normalising: float near-ties
may differ). Timed: one pass after a warm-up pass (our compilation is reported apart).

Command (CPU, quick):  python benchmarks/study_eval.py --model=pythia-14m --max_prompts=512
Command (GPU):         python benchmarks/study_eval.py --model=pythia-410m
Last line: `RESULT study_eval ratio=<ours prompts/s / pipeline prompts/s>`.
"""

import os
import tempfile
import time

from absl import app, flags
import numpy as np

import common

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "pythia-70m", list(common.PYTHIA), "Pythia shape (random weights)")
flags.DEFINE_integer("vocab_size", common.PYTHIA_VOCAB, "vocabulary rows (Pythia's: 50,304; smaller for quick tests)")
flags.DEFINE_string("config", "configs/define_synthetic.py", "a define experiment's config: its last stage's eval sets")
flags.DEFINE_integer("num_entities", 4000, "data.num_entities (the study's CVDB: 4,000)")
flags.DEFINE_integer("batch_size", 256, "prompts per batch, every side (the study's configs: 256)")
flags.DEFINE_integer("max_new_tokens", 8, "greedy tokens per prompt (the study's CVDB: 8)")
flags.DEFINE_integer("max_prompts", 0, "prompts kept per eval set (0: all)")


def _eval_sets():
  """(config, tokenizer, {set name: examples}) of the config's last stage, seed 0."""
  from iml_jax import experiment, specs, stage
  from iml_jax.data import tasks

  config = experiment.load_config(FLAGS.config)
  if config.task != "define":
    raise SystemExit(f"--config={FLAGS.config}: its task is {config.task!r}; expected a define experiment")
  config.data.num_entities = FLAGS.num_entities
  config.eval.max_new_tokens = FLAGS.max_new_tokens
  config = specs.Experiment.from_config(config)
  task = tasks.for_seed(config, 0)
  last = len(config.stage_names) - 1
  data = task.stage_data(0, last, config.stages[config.stage_names[last]].train_subset)
  names = [k for k in data.evals if stage.is_evaluated(config.eval.subsets, k)]
  evals = {name: data.evals[name][: FLAGS.max_prompts or None] for name in names}
  return config, task.tokenizer(os.path.join(tempfile.mkdtemp(), "tokenizer.json")), evals


def _ours(folder: str, config, tokenizer, evals: dict) -> tuple[dict, float, float]:
  """({set: predictions}, seconds per pass, seconds of the first pass (compiles))."""
  import jax
  from iml_jax import evaluate, hf_import, sharding
  from iml_jax.models import registry

  cfg, params = hf_import.load_hf_model(folder)
  model = registry.build(cfg)
  mesh = sharding.make_mesh((-1, 1, 1))
  rules = sharding.rules_for("dp")
  params = jax.device_put(params, sharding.replicated(mesh))
  eval_sets = evaluate.prepare_eval_sets(
    tokenizer, evals, list(evals), config.eval.prompt_bucket, config.data.block_size
  )

  def one_pass():
    results = evaluate.evaluate(
      model, params, tokenizer, eval_sets, FLAGS.batch_size, FLAGS.max_new_tokens, mesh, rules
    )
    return {name: r["predictions"] for name, r in results.items()}

  start = time.perf_counter()
  one_pass()
  first = time.perf_counter() - start
  start = time.perf_counter()
  predictions = one_pass()
  return predictions, time.perf_counter() - start, first


def _hf_tokenizer(tokenizer):
  import transformers

  pad = tokenizer.backend.id_to_token(tokenizer.pad_id)
  return transformers.PreTrainedTokenizerFast(
    tokenizer_object=tokenizer.backend, eos_token=pad, pad_token=pad, padding_side="left"
  )


def _pipeline(model, hf_tokenizer, evals: dict) -> tuple[dict, float]:
  """The original's evaluation: `pipeline("text-generation")` over each set's prompts."""
  import transformers

  generator = transformers.pipeline("text-generation", model=model, tokenizer=hf_tokenizer, device=model.device)

  def one_pass():
    predictions = {}
    for name, examples in evals.items():
      outputs = generator(
        [ex.prompt for ex in examples],
        batch_size=FLAGS.batch_size,
        max_new_tokens=FLAGS.max_new_tokens,
        do_sample=False,
        return_full_text=False,
        pad_token_id=hf_tokenizer.pad_token_id,
      )
      predictions[name] = [out[0]["generated_text"].strip() for out in outputs]
    return predictions

  one_pass()
  start = time.perf_counter()
  predictions = one_pass()
  return predictions, time.perf_counter() - start


def _generate(model, hf_tokenizer, tokenizer, evals: dict) -> tuple[dict, float]:
  """Batched `model.generate` on left-padded prompts, decoded as ours are."""
  import torch

  def one_pass():
    predictions = {}
    for name, examples in evals.items():
      texts = []
      for start in range(0, len(examples), FLAGS.batch_size):
        batch = hf_tokenizer(
          [ex.prompt for ex in examples[start : start + FLAGS.batch_size]], return_tensors="pt", padding=True
        ).to(model.device)
        with torch.no_grad():
          out = model.generate(
            **batch, max_new_tokens=FLAGS.max_new_tokens, do_sample=False, pad_token_id=hf_tokenizer.pad_token_id
          )
        texts += [tokenizer.decode(row).strip() for row in out[:, batch["input_ids"].shape[1] :].tolist()]
      predictions[name] = texts
    return predictions

  one_pass()
  start = time.perf_counter()
  predictions = one_pass()
  return predictions, time.perf_counter() - start


def _agreement(ours: dict, theirs: dict) -> float:
  from iml_jax import metrics

  pairs = [(a, b) for name in ours for a, b in zip(ours[name], theirs[name])]
  return float(np.mean([metrics.normalize_answer(a) == metrics.normalize_answer(b) for a, b in pairs]))


def main(argv):
  del argv
  import jax
  import torch
  import transformers

  common.set_matmul_precision("highest")
  config, tokenizer, evals = _eval_sets()
  shape = common.shape_of(FLAGS.model)
  if FLAGS.vocab_size < tokenizer.vocab_size:
    raise SystemExit(f"--vocab_size={FLAGS.vocab_size}: expected at least the tokenizer's {tokenizer.vocab_size}")
  hf_config = transformers.GPTNeoXConfig(
    **common.hf_config_kwargs(shape, FLAGS.vocab_size, config.data.block_size + FLAGS.max_new_tokens),
    eos_token_id=tokenizer.pad_id,
    pad_token_id=tokenizer.pad_id,
  )
  torch.manual_seed(0)
  reference = transformers.GPTNeoXForCausalLM(hf_config).eval().to(common.torch_device())
  hf_tokenizer = _hf_tokenizer(tokenizer)
  with tempfile.TemporaryDirectory() as folder:
    reference.save_pretrained(folder)
    ours, ours_s, first_s = _ours(folder, config, tokenizer, evals)
  by_pipeline, pipeline_s = _pipeline(reference, hf_tokenizer, evals)
  by_generate, generate_s = _generate(reference, hf_tokenizer, tokenizer, evals)
  agree = {"pipeline": _agreement(ours, by_pipeline), "generate": _agreement(ours, by_generate)}
  if min(agree.values()) < 0.99:
    raise SystemExit(f"predictions differ: the fraction identical to ours is {agree}")
  prompts = sum(len(examples) for examples in evals.values())
  print(
    f"devices: jax {jax.devices()[0].platform} x{jax.device_count()}, torch {common.torch_device()}; {FLAGS.model}, "
    f"{len(evals)} eval sets of {FLAGS.config} ({FLAGS.num_entities} entities), {prompts} prompts, "
    f"{FLAGS.max_new_tokens} new tokens, batch {FLAGS.batch_size}, fp32"
  )
  print(f"identical predictions: pipeline {agree['pipeline']:.3f}, generate {agree['generate']:.3f} of prompts")
  rate = {name: prompts / s for name, s in (("ours", ours_s), ("pipeline", pipeline_s), ("generate", generate_s))}
  print(f"iml-jax evaluate.evaluate   {rate['ours']:10.1f} prompts/s (first pass incl. compile {first_s:.1f} s)")
  print(f"transformers pipeline       {rate['pipeline']:10.1f} prompts/s")
  print(f"transformers batch generate {rate['generate']:10.1f} prompts/s")
  print(f"ours / batch generate: {rate['ours'] / rate['generate']:.2f}")
  print(f"RESULT study_eval ratio={rate['ours'] / rate['pipeline']:.2f}")


if __name__ == "__main__":
  app.run(main)
