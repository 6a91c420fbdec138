r"""Training throughput: iml-jax's jitted, sharded, donated train step vs a Hugging Face PyTorch GPT-NeoX step.

Same Pythia-shaped config, batch, sequence length and optimizer (AdamW, fp32 master weights) on the same
device; tokens/s over `--rounds` rounds of `--steps` timed steps per side after warm-up (compilation excluded), the
sides alternating round by round; the ratio is the median of the rounds' ratios. On an accelerator
`--dtype=bfloat16` runs our compute in bf16 and the reference under `torch.autocast(bfloat16)` (bf16 changes
the numerics on both sides). Both sides multiply fp32 matrices at the same precision, `--matmul_precision`:
`highest` (true fp32; TF32 off in JAX and torch) or `tf32` (TF32 on in both). MFU is printed for ours against
`--peak_tflops` with the formula it uses: FLOPs per token = 6 N + 12 L d T (PaLM, appendix B), N the parameters
without the input embedding table (a lookup, no FLOPs; the output projection counts), L layers, d width, T tokens
per sequence.

Command (CPU):            python benchmarks/train_throughput.py
Command (GPU, 410M shape): python benchmarks/train_throughput.py --d_model=1024 --n_layers=24 --n_heads=16 \
    --vocab_size=50304 --batch_size=16 --seq_len=512 --dtype=bfloat16 --peak_tflops=989
Last line: `RESULT train_throughput ratio=<ours tokens/s / reference tokens/s>`.
"""

import types

from absl import app, flags
import jax
import numpy as np

import common
import host_malloc


FLAGS = flags.FLAGS
flags.DEFINE_integer("d_model", 256, "width")
flags.DEFINE_integer("n_layers", 4, "layers")
flags.DEFINE_integer("n_heads", 4, "heads")
flags.DEFINE_integer("vocab_size", 2048, "vocabulary")
flags.DEFINE_integer("batch_size", 16, "sequences per step")
flags.DEFINE_integer("seq_len", 64, "tokens per sequence")
flags.DEFINE_integer("steps", 3, "timed steps per side and round")
flags.DEFINE_integer("rounds", 8, "rounds of --steps steps per side, the sides alternating")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype (parameters stay fp32)")
common.define_attention_flag()
flags.DEFINE_bool("scan_layers", False, "our layers scanned with nn.scan (one block compiled)")
flags.DEFINE_enum("remat", "none", ["none", "full", "dots_saveable"], "our rematerialisation policy")
common.adopt_host_malloc_flag()
flags.DEFINE_float("peak_tflops", 0.0, "the device's peak TFLOP/s for MFU (0: not printed)")
flags.DEFINE_enum(
  "matmul_precision",
  "highest",
  ["highest", "tf32"],
  "fp32 matmul precision on both sides: true fp32, or TF32 (NVIDIA GPUs)",
)

# torch.optim.AdamW's defaults, no decay
ADAMW = types.SimpleNamespace(
  name="adamw", lr=1e-4, warmup_frac=0.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=0.0
)


def _torch_adamw(model):
  import torch

  return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0).step


def main(argv):
  del argv
  common.apply_host_malloc(FLAGS.host_malloc)
  common.set_matmul_precision(FLAGS.matmul_precision)
  shape = dict(d_model=FLAGS.d_model, n_layers=FLAGS.n_layers, n_heads=FLAGS.n_heads, d_mlp=4 * FLAGS.d_model)
  tokens = np.random.default_rng(0).integers(0, FLAGS.vocab_size, size=(FLAGS.batch_size, FLAGS.seq_len))
  peaks = common.matmul_peak_gflops(FLAGS.dtype)
  ours = common.our_side(
    dict(
      vocab_size=FLAGS.vocab_size,
      max_len=FLAGS.seq_len,
      dtype=FLAGS.dtype,
      attention=FLAGS.attention,
      scan_layers=FLAGS.scan_layers,
      remat=FLAGS.remat,
      **shape,
    ),
    ADAMW,
    tokens,
    1,
  )
  reference = common.torch_side(
    common.hf_config_kwargs(shape, FLAGS.vocab_size, FLAGS.seq_len), _torch_adamw, tokens, 1, FLAGS.dtype == "bfloat16"
  )
  comparison = common.time_side_by_side(ours, reference, FLAGS.steps, FLAGS.rounds)
  per_step = FLAGS.batch_size * FLAGS.seq_len
  flops = common.flops_per_token(ours.parameters, FLAGS.n_layers, FLAGS.d_model, FLAGS.seq_len)
  attention = common.attention_in_use(FLAGS.attention, FLAGS.seq_len, FLAGS.d_model // FLAGS.n_heads, FLAGS.dtype)
  print(
    f"devices: jax {jax.devices()[0].platform} x{jax.device_count()}, torch {common.torch_device()}; Pythia "
    f"d={FLAGS.d_model} L={FLAGS.n_layers} V={FLAGS.vocab_size} ({ours.parameters / 1e6:.1f}M params), batch "
    f"{FLAGS.batch_size} x {FLAGS.seq_len}, {FLAGS.dtype}, fp32 matmuls: {FLAGS.matmul_precision} on both sides, "
    f"AdamW, our attention: {attention}, scan_layers: {FLAGS.scan_layers}, remat: {FLAGS.remat}, host "
    f"malloc: {host_malloc.in_effect(FLAGS.host_malloc)}"
  )
  common.print_step_comparison("train_throughput", comparison, per_step, flops, peaks, FLAGS.dtype, FLAGS.peak_tflops)


if __name__ == "__main__":
  app.run(main)
