r"""The study's training step (docs/study.md §7.2-§7.3): iml-jax against the original's stack on the same device.

A Pythia shape by name with random weights, 48-token sequences, `--batch_size` sequences per device and
micro-batch × `--grad_accum` micro-batches per step, bf16 compute over fp32 weights, the study's Adafactor
(HF semantics: factored second moments, beta2(t) = 1 - t^-0.8, eps 1e-30, update RMS clip 1.0, no momentum, no
parameter scaling) after a global grad-norm clip of 1.0, lr 5e-5 decaying linearly.
Ours: `train.make_train_step` with `train.make_optimizer`'s Adafactor preset. Reference: `transformers`'
`GPTNeoXForCausalLM` under `torch.autocast(bfloat16)`, `transformers.Adafactor(scale_parameter=False,
relative_step=False, lr=5e-5)` after `clip_grad_norm_(1.0)`, a linear schedule: what the HF Trainer runs for the
study. fp32 matrix products run at the same precision on both sides (`--matmul_precision`).

Timed: `--rounds` rounds of `--steps` steps per side after two warm-up steps, the sides alternating round by
round, so that a machine whose speed drifts during the run weighs on both alike.
Printed: tokens/s of each side (median seconds per step over the rounds), each round's ratio and their median, the
GFLOP/s each achieves beside a large matmul's on this device (same process), our MFU against `--peak_tflops` with
its formula, peak device memory of each (accelerators).

Command (CPU, quick):  python benchmarks/study_step.py --model=pythia-14m --batch_size=8 --dtype=float32
Command (GPU, 1B):     python benchmarks/study_step.py --model=pythia-1b --batch_size=128 --grad_accum=2 \
    --peak_tflops=989
Last line: `RESULT study_step ratio=<ours tokens/s / reference tokens/s>`.
"""

from absl import app, flags

import common
import host_malloc
from iml_jax import config_blocks

FLAGS = flags.FLAGS
common.define_study_step_flags(default_steps=5)
flags.DEFINE_enum("matmul_precision", "highest", ["highest", "tf32"], "fp32 matmul precision on both sides")
flags.DEFINE_integer("rounds", 3, "rounds of --steps steps per side, the sides alternating")
flags.DEFINE_float("peak_tflops", 0.0, "the device's peak TFLOP/s in --dtype for MFU (0: not printed)")


def _study_adafactor(total_steps: int):
  """The optimizer step the HF Trainer builds for the study, on a torch model."""
  import torch
  import transformers

  def make(model):
    optimizer = transformers.Adafactor(model.parameters(), lr=5e-5, scale_parameter=False, relative_step=False)
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, 0, total_steps)

    def step():
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      optimizer.step()
      schedule.step()

    return step

  return make


def main(argv):
  del argv
  common.apply_host_malloc(FLAGS.host_malloc)
  import jax

  common.set_matmul_precision(FLAGS.matmul_precision)
  shape, fields, tokens = common.study_step_inputs(FLAGS)
  per_device = FLAGS.batch_size * FLAGS.grad_accum
  peaks = common.matmul_peak_gflops(FLAGS.dtype)
  ours = common.our_side(
    fields,
    config_blocks.optimizer(),  # the study's Adafactor preset: lr 5e-5, clip 1.0
    tokens,
    FLAGS.grad_accum,
  )
  reference = common.torch_side(
    common.hf_config_kwargs(shape, FLAGS.vocab_size, FLAGS.seq_len),
    _study_adafactor(10**6),
    tokens[:per_device],  # one device's share: the reference trains on one device
    FLAGS.grad_accum,
    bf16=FLAGS.dtype == "bfloat16",
  )
  comparison = common.time_side_by_side(ours, reference, FLAGS.steps, FLAGS.rounds)
  flops = common.flops_per_token(ours.parameters, shape["n_layers"], shape["d_model"], FLAGS.seq_len)
  print(
    f"devices: jax {jax.devices()[0].platform} x{jax.device_count()}, torch {common.torch_device()}; {FLAGS.model} "
    f"({ours.parameters / 1e6:.1f}M parameters without the input embedding; the reference counts "
    f"{reference.parameters / 1e6:.1f}M), {FLAGS.batch_size} x {FLAGS.grad_accum} sequences of {FLAGS.seq_len} "
    f"tokens per device and step, {FLAGS.dtype} compute over fp32 weights, study Adafactor + clip 1.0, fp32 "
    f"matmuls: {FLAGS.matmul_precision} on both sides, our attention: "
    f"{common.attention_in_use(FLAGS.attention, FLAGS.seq_len, shape['d_model'] // shape['n_heads'], FLAGS.dtype)}, "
    f"our loss: {f'{FLAGS.loss_chunk} positions at a time' if FLAGS.loss_chunk else 'all positions at once'}, "
    "host malloc: "
    f"{host_malloc.in_effect(FLAGS.host_malloc)}"
  )
  common.print_step_comparison(
    "study_step", comparison, per_device * FLAGS.seq_len, flops, peaks, FLAGS.dtype, FLAGS.peak_tflops
  )


if __name__ == "__main__":
  app.run(main)
