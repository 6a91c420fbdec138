r"""Gradient-alignment statistics: iml-jax's chunked per-example gradients vs the original's method.

The original (docs/study.md §9) runs one PyTorch backward per example in a Python loop, flattens every
gradient into one vector and compares vectors. Both sides here compute, for D definitions and their K
questions each (causal-LM loss over the whole block, fp32), the cosine, L2 distance and L1/L2/L∞ norms
of every definition–question pair, on the same tiny random Pythia built with `transformers` and
imported into iml-jax. Each side runs in its own process, so its peak memory is its own; the cosines
must agree before the rates are compared. Timed: one pass after a warm-up pass (compilation excluded).

Command (CPU; on a GPU machine both sides use the GPU):
  python benchmarks/grad_alignment.py
Last line: `RESULT grad_alignment ratio=<ours examples/s / reference examples/s>`.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("definitions", 32, "definitions (each with `questions` QA pairs)")
flags.DEFINE_integer("questions", 6, "QA pairs per definition (the study's CVDB: 6)")
flags.DEFINE_integer("block_size", 48, "tokens per example (the study's: 48)")
flags.DEFINE_integer("d_model", 128, "width of the tiny Pythia")
flags.DEFINE_integer("n_layers", 4, "layers")
flags.DEFINE_integer("n_heads", 4, "heads")
flags.DEFINE_integer("vocab_size", 1024, "vocabulary")
flags.DEFINE_integer("chunk", 8, "definitions per chunk in iml-jax")
flags.DEFINE_string(
  "model",
  "",
  "a Pythia shape by name (pythia-14m, pythia-70m, ...): sets d_model, n_layers, "
  "n_heads, the MLP width and the 50,304-row vocabulary; empty: the flags above",
)
flags.DEFINE_string("side", "", "internal: run one side (ours / reference) in this process")
flags.DEFINE_string("workdir", "", "internal: the shared model folder and outputs")


def _shape() -> dict:
  """d_model, n_layers, n_heads, d_mlp, vocab_size of the benchmarked model."""
  if FLAGS.model:
    import common

    return {**common.shape_of(FLAGS.model), "vocab_size": common.PYTHIA_VOCAB}
  return dict(
    d_model=FLAGS.d_model,
    n_layers=FLAGS.n_layers,
    n_heads=FLAGS.n_heads,
    d_mlp=4 * FLAGS.d_model,
    vocab_size=FLAGS.vocab_size,
  )


def _data():
  import numpy as np

  rng = np.random.default_rng(0)
  n = FLAGS.definitions * (1 + FLAGS.questions)
  return rng.integers(1, _shape()["vocab_size"], size=(n, FLAGS.block_size)).astype(np.int64)


def _build_model(folder: str) -> None:
  import torch
  import transformers

  shape = _shape()
  torch.manual_seed(0)
  transformers.GPTNeoXForCausalLM(
    transformers.GPTNeoXConfig(
      vocab_size=shape["vocab_size"],
      hidden_size=shape["d_model"],
      num_hidden_layers=shape["n_layers"],
      num_attention_heads=shape["n_heads"],
      intermediate_size=shape["d_mlp"],
      max_position_embeddings=FLAGS.block_size,
    )
  ).save_pretrained(folder)


def _peak_memory() -> dict:
  rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return {"peak_rss_mib": rss_mib}


def run_reference(folder: str) -> dict:
  import numpy as np
  import torch
  import transformers

  device = "cuda" if torch.cuda.is_available() else "cpu"
  model = transformers.GPTNeoXForCausalLM.from_pretrained(folder).to(device)
  model.train()  # as the original; this model has no dropout
  tokens = torch.tensor(_data(), device=device)
  d, k = FLAGS.definitions, FLAGS.questions

  def flat_gradient(row):
    model.zero_grad()
    model(input_ids=tokens[row : row + 1], labels=tokens[row : row + 1]).loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])

  def one_pass():
    cos = []
    for i in range(d):
      g_def = flat_gradient(i).clone()
      for j in range(k):
        g_q = flat_gradient(d + i * k + j)
        cos.append(float(torch.nn.functional.cosine_similarity(g_def, g_q, dim=0)))
        float(torch.dist(g_def, g_q))
        [float(x) for x in (g_q.abs().sum(), g_q.norm(), g_q.abs().max())]
      [float(x) for x in (g_def.abs().sum(), g_def.norm(), g_def.abs().max())]
    return np.array(cos).reshape(d, k)

  one_pass()
  if device == "cuda":
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
  start = time.perf_counter()
  cos = one_pass()
  seconds = time.perf_counter() - start
  memory = _peak_memory()
  if device == "cuda":
    memory["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
  return {"seconds": seconds, "cos": cos.tolist(), "device": device, **memory}


def run_ours(folder: str) -> dict:
  import jax
  import numpy as np
  from iml_jax import grad_alignment, hf_import
  from iml_jax.models import registry

  cfg, params = hf_import.load_hf_model(folder)
  model = registry.build(cfg)
  params = jax.device_put(params)
  tokens = _data().astype(np.int32)
  d, k = FLAGS.definitions, FLAGS.questions
  # The reference's loss: mean next-token cross-entropy over the whole block.
  loss_mask = np.ones((len(tokens), FLAGS.block_size - 1), np.float32)
  definitions = {"tokens": tokens[:d], "loss_mask": loss_mask[:d]}
  questions = {"tokens": tokens[d:].reshape(d, k, -1), "loss_mask": loss_mask[d:].reshape(d, k, -1)}

  def one_pass():
    stats, total = grad_alignment.pair_statistics(model, params, definitions, questions, chunk=FLAGS.chunk)
    jax.block_until_ready((stats, total))
    return np.asarray(stats["cos"])

  # XLA's own account of the compiled call: its temporaries are one chunk's gradients and activations.
  compiled = grad_alignment.pair_statistics.lower(model, params, definitions, questions, chunk=FLAGS.chunk).compile()
  analysis = compiled.memory_analysis()

  one_pass()
  start = time.perf_counter()
  cos = one_pass()
  seconds = time.perf_counter() - start
  memory = _peak_memory()
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    memory["peak_device_mib"] = stats["peak_bytes_in_use"] / 2**20
  memory["xla_temp_mib_per_chunk"] = analysis.temp_size_in_bytes / 2**20
  return {"seconds": seconds, "cos": cos.tolist(), "device": jax.devices()[0].platform, **memory}


def main(argv):
  del argv
  if FLAGS.side:
    result = (run_ours if FLAGS.side == "ours" else run_reference)(os.path.join(FLAGS.workdir, "model"))
    json.dump(result, open(os.path.join(FLAGS.workdir, f"{FLAGS.side}.json"), "w"))
    return
  import common
  import numpy as np

  with tempfile.TemporaryDirectory() as workdir:
    _build_model(os.path.join(workdir, "model"))
    passed = [
      f"--{name}={getattr(FLAGS, name)}"
      for name in (
        "definitions",
        "questions",
        "block_size",
        "d_model",
        "n_layers",
        "n_heads",
        "vocab_size",
        "chunk",
        "model",
      )
    ]
    results = {}
    for side in ("ours", "reference"):
      subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--side={side}", f"--workdir={workdir}", *passed],
        check=True,
        env={**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"},
      )
      results[side] = json.load(open(os.path.join(workdir, f"{side}.json")))
  ours, theirs = results["ours"], results["reference"]
  np.testing.assert_allclose(ours["cos"], theirs["cos"], atol=1e-4)
  examples = FLAGS.definitions * (1 + FLAGS.questions)
  shape = _shape()
  peaks = common.matmul_peak_gflops()
  d, v = shape["d_model"], shape["vocab_size"]
  per_layer = 4 * d * d + 2 * d * shape["d_mlp"]  # attention and MLP matrices (biases and norms left out)
  parameters = shape["n_layers"] * per_layer + d * v  # without the input embedding; the output projection counts
  pass_gflop = 6 * parameters * (FLAGS.block_size - 1) * examples / 1e9  # forward and backward, per position
  rate = {side: examples / r["seconds"] for side, r in results.items()}
  print(
    f"devices: jax {ours['device']}, torch {theirs['device']}; {FLAGS.definitions} definitions x "
    f"{FLAGS.questions} questions, block {FLAGS.block_size}, Pythia {FLAGS.model or ''} d={shape['d_model']} "
    f"L={shape['n_layers']} V={shape['vocab_size']}, chunk {FLAGS.chunk}; cosines agree within 1e-4"
  )
  for side, name in (("ours", "iml-jax pair_statistics"), ("reference", "PyTorch loop, flat vectors")):
    memory = ", ".join(f"{k} {v:.0f}" for k, v in results[side].items() if k.startswith("peak"))
    gflops = pass_gflop / results[side]["seconds"]
    print(
      f"{name:28s} {rate[side]:10.1f} examples/s ({results[side]['seconds']:.3f} s), {gflops:.0f} GFLOP/s; {memory}"
    )
  print(
    f"large fp32 matmul on this device: jax {peaks['jax']:.0f} GFLOP/s, torch {peaks['torch']:.0f} GFLOP/s; "
    "FLOPs = 6 N per position (N: the matrices without the input embedding)"
  )
  print(
    f"iml-jax memory per chunk of {FLAGS.chunk} definitions x {1 + FLAGS.questions} examples (XLA's temporaries): "
    f"{ours['xla_temp_mib_per_chunk']:.0f} MiB"
  )
  print(f"RESULT grad_alignment ratio={rate['ours'] / rate['reference']:.2f}")


if __name__ == "__main__":
  app.run(main)
