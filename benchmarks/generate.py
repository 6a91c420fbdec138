r"""Greedy EM-evaluation decoding: iml-jax's jitted KV-cache loop vs `transformers` PyTorch `generate`.

Both decode the same left-padded prompts with the same tiny random Pythia (GPT-NeoX) model, built
here with `transformers` and imported with `iml_jax.hf_import` (no download). Both compute in full
fp32 (JAX's TF32 matmuls on GPUs are switched off, as PyTorch's are by default); their generations are
compared before timing (at least 99% of prompts must decode identically: float near-ties may differ). After one
warm-up pass each (XLA compilation is reported separately, not counted) the sides decode `--rounds` full passes
each, alternating pass by pass (`common.time_side_by_side`), so that a machine whose speed drifts weighs on both;
the ratio is the median of the rounds' ratios.

Command (CPU; on a GPU machine both sides use the GPU):
  python benchmarks/generate.py
Last line: `RESULT generate ratio=<median over the rounds of ours prompts/s / reference prompts/s>`.
"""

import tempfile
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

import common
from iml_jax import hf_import
from iml_jax.models.decoder import DecoderLM
from iml_jax.models.decoding import greedy_decode

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_prompts", 512, "prompts per pass")
flags.DEFINE_integer("batch_size", 128, "prompts per decoding batch, both sides")
flags.DEFINE_integer("max_new_tokens", 8, "greedy tokens per prompt (the study evaluates with 8)")
flags.DEFINE_integer("d_model", 128, "width of the tiny Pythia")
flags.DEFINE_integer("n_layers", 4, "layers of the tiny Pythia")
flags.DEFINE_integer("n_heads", 4, "attention heads")
flags.DEFINE_integer("vocab_size", 1024, "vocabulary size")
flags.DEFINE_integer("rounds", 6, "timed passes per side, the sides alternating")


def _prompts(rng: np.random.Generator, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded prompts of 6–16 tokens, like the study's evaluation questions, and their mask."""
  width = 16
  lengths = rng.integers(6, width + 1, size=FLAGS.num_prompts)
  tokens = np.full((FLAGS.num_prompts, width), pad_id, np.int64)
  mask = np.zeros_like(tokens)
  for row, valid, n in zip(tokens, mask, lengths):
    row[width - n :] = rng.integers(1, FLAGS.vocab_size, size=n)
    valid[width - n :] = 1
  return tokens, mask


def _timed_passes(decode, parameters: int, peak_memory_mib) -> common.Side:
  """`decode` (one pass over every prompt) as a side whose `run(passes)` returns the passes' seconds."""

  def run(passes: int) -> float:
    start = time.perf_counter()
    for _ in range(passes):
      decode()
    return time.perf_counter() - start

  return common.Side(run, parameters, peak_memory_mib)


def main(argv):
  del argv
  jax.config.update("jax_default_matmul_precision", "highest")
  torch_device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  pad_id = 0
  config = transformers.GPTNeoXConfig(
    vocab_size=FLAGS.vocab_size,
    hidden_size=FLAGS.d_model,
    num_hidden_layers=FLAGS.n_layers,
    num_attention_heads=FLAGS.n_heads,
    intermediate_size=4 * FLAGS.d_model,
    max_position_embeddings=64,
    rotary_pct=0.25,
    eos_token_id=pad_id,
    pad_token_id=pad_id,
  )
  reference = transformers.GPTNeoXForCausalLM(config).eval().to(torch_device)
  with tempfile.TemporaryDirectory() as folder:
    reference.save_pretrained(folder)
    cfg, params = hf_import.load_hf_model(folder)
  model = DecoderLM(cfg)
  params = jax.device_put(params)
  tokens, mask = _prompts(np.random.default_rng(0), pad_id)
  batches = [
    (tokens[i : i + FLAGS.batch_size], mask[i : i + FLAGS.batch_size])
    for i in range(0, FLAGS.num_prompts, FLAGS.batch_size)
  ]

  def ours():
    outs = [greedy_decode(model, params, jnp.asarray(t, jnp.int32), FLAGS.max_new_tokens, pad_id) for t, _ in batches]
    return np.concatenate([np.asarray(o) for o in outs])

  def theirs():
    outs = []
    with torch.no_grad():
      for t, m in batches:
        out = reference.generate(
          torch.tensor(t, device=torch_device),
          attention_mask=torch.tensor(m, device=torch_device),
          max_new_tokens=FLAGS.max_new_tokens,
          do_sample=False,
          pad_token_id=pad_id,
          eos_token_id=pad_id,
        )
        new = out[:, t.shape[1] :].cpu().numpy()
        outs.append(np.pad(new, ((0, 0), (0, FLAGS.max_new_tokens - new.shape[1])), constant_values=pad_id))
    return np.concatenate(outs)

  start = time.perf_counter()
  ours_out = ours()  # compiles
  compile_s = time.perf_counter() - start
  theirs_out = theirs()
  agree = float((ours_out == theirs_out).all(axis=1).mean())
  if agree < 0.99:
    raise SystemExit(f"generations differ: only {agree:.3f} of prompts decode identically")
  n_params = sum(p.numel() for p in reference.parameters()) - reference.gpt_neox.embed_in.weight.numel()
  comparison = common.time_side_by_side(
    _timed_passes(ours, n_params, common.jax_peak_memory_mib),
    _timed_passes(theirs, n_params, common.torch_peak_memory_mib),
    steps=1,
    rounds=FLAGS.rounds,
  )
  ours_s, theirs_s = comparison.ours.seconds_per_step, comparison.reference.seconds_per_step
  peaks = common.matmul_peak_gflops()
  # 2 N FLOPs per token read or generated (padded prompt width + new tokens), N without the input embedding
  pass_gflop = 2 * n_params * FLAGS.num_prompts * (tokens.shape[1] + FLAGS.max_new_tokens) / 1e9
  ours_rate, theirs_rate = FLAGS.num_prompts / ours_s, FLAGS.num_prompts / theirs_s
  print(
    f"devices: jax {jax.devices()[0].platform}, torch {torch_device}; {FLAGS.num_prompts} prompts, "
    f"batch {FLAGS.batch_size}, {FLAGS.max_new_tokens} new tokens, Pythia d={FLAGS.d_model} "
    f"L={FLAGS.n_layers} H={FLAGS.n_heads} V={FLAGS.vocab_size}"
  )
  print(f"identical generations: {agree:.3f} of prompts; iml-jax first pass incl. compile {compile_s:.2f} s")
  print(
    f"large fp32 matmul on this device: jax {peaks['jax']:.0f} GFLOP/s, torch {peaks['torch']:.0f} GFLOP/s; "
    "FLOPs = 2 N per token read or generated (N: parameters without the input embedding)"
  )
  for name, rate, timing in (
    ("iml-jax greedy_decode:", ours_rate, comparison.ours),
    ("transformers generate:", theirs_rate, comparison.reference),
  ):
    memory = "" if timing.peak_memory_mib is None else f", peak device memory {timing.peak_memory_mib:.0f} MiB"
    seconds = timing.seconds_per_step
    print(f"{name:24s}{rate:10.1f} prompts/s ({seconds:.3f} s per pass), {pass_gflop / seconds:.0f} GFLOP/s{memory}")
  common.print_rounds_and_result("generate", comparison)


if __name__ == "__main__":
  app.run(main)
