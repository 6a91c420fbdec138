r"""Training throughput: iml-jax's jitted, sharded, donated train step vs a Hugging Face PyTorch GPT-NeoX step.

Same Pythia-shaped config, batch, sequence length and optimizer (AdamW, fp32 master weights) on the same
device; tokens/s over `--steps` timed steps after warm-up (compilation excluded). On an accelerator
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

import time
import types

from absl import app, flags
import jax
import numpy as np
import torch
import transformers

from iml_jax import sharding, train
from iml_jax.models import registry

FLAGS = flags.FLAGS
flags.DEFINE_integer("d_model", 256, "width")
flags.DEFINE_integer("n_layers", 4, "layers")
flags.DEFINE_integer("n_heads", 4, "heads")
flags.DEFINE_integer("vocab_size", 2048, "vocabulary")
flags.DEFINE_integer("batch_size", 16, "sequences per step")
flags.DEFINE_integer("seq_len", 64, "tokens per sequence")
flags.DEFINE_integer("steps", 10, "timed steps per side")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype (parameters stay fp32)")
flags.DEFINE_enum("attention", "einsum", ["einsum", "xla", "cudnn"], "our attention implementation")
flags.DEFINE_bool("scan_layers", False, "our layers scanned with nn.scan (one block compiled)")
flags.DEFINE_enum("remat", "none", ["none", "full", "dots_saveable"], "our rematerialisation policy")
flags.DEFINE_float("peak_tflops", 0.0, "the device's peak TFLOP/s for MFU (0: not printed)")
flags.DEFINE_enum(
  "matmul_precision",
  "highest",
  ["highest", "tf32"],
  "fp32 matmul precision on both sides: true fp32, or TF32 (NVIDIA GPUs)",
)


def _ours(tokens: np.ndarray) -> tuple[float, int, float]:
  """(seconds per step, parameters without the input embedding, seconds to compile the step)."""
  cfg = registry.make_config(
    "gpt_neox",
    vocab_size=FLAGS.vocab_size,
    d_model=FLAGS.d_model,
    n_layers=FLAGS.n_layers,
    n_heads=FLAGS.n_heads,
    d_mlp=4 * FLAGS.d_model,
    max_len=FLAGS.seq_len,
    dtype=FLAGS.dtype,
    attention=FLAGS.attention,
    scan_layers=FLAGS.scan_layers,
    remat=FLAGS.remat,
  )
  model = registry.build(cfg)
  mesh = sharding.make_mesh((-1, 1, 1))
  rules = sharding.rules_for("dp")
  adamw = types.SimpleNamespace(
    name="adamw", lr=1e-4, warmup_frac=0.0, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=0.0
  )  # torch.optim.AdamW's defaults, no decay
  optimizer = train.make_optimizer(adamw, 10**6)
  abstract = train.abstract_state(model, optimizer, mesh, rules)
  state = train.create_state(model, optimizer, abstract, jax.random.key(0))
  layout = {
    "tokens": sharding.batch_sharding(mesh, rules, 2),
    "loss_mask": sharding.batch_sharding(mesh, rules, 2),
    "weights": sharding.batch_sharding(mesh, rules, 1),
  }
  step = train.make_train_step(model, optimizer, 1, train.shardings_of(abstract), layout)
  batch = {
    "tokens": tokens.astype(np.int32),
    "loss_mask": np.ones((len(tokens), FLAGS.seq_len - 1), np.float32),
    "weights": np.ones(len(tokens), np.float32),
  }
  batch = {k: sharding.put_global_batch(v, layout[k]) for k, v in batch.items()}
  start = time.perf_counter()
  step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  for _ in range(2):
    state, loss = step(state, batch)
  jax.block_until_ready(loss)
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    state, loss = step(state, batch)
  jax.block_until_ready(loss)
  n_params = sum(x.size for x in jax.tree.leaves(state.params)) - state.params["embed_in"]["embedding"].size
  return (time.perf_counter() - start) / FLAGS.steps, n_params, compile_s


def _reference(tokens: np.ndarray) -> float:
  device = "cuda" if torch.cuda.is_available() else "cpu"
  tf32 = FLAGS.matmul_precision == "tf32"
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
  torch.set_float32_matmul_precision("high" if tf32 else "highest")
  torch.manual_seed(0)
  model = (
    transformers.GPTNeoXForCausalLM(
      transformers.GPTNeoXConfig(
        vocab_size=FLAGS.vocab_size,
        hidden_size=FLAGS.d_model,
        num_hidden_layers=FLAGS.n_layers,
        num_attention_heads=FLAGS.n_heads,
        intermediate_size=4 * FLAGS.d_model,
        max_position_embeddings=FLAGS.seq_len,
      )
    )
    .to(device)
    .train()
  )
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
  inputs = torch.tensor(tokens, device=device)

  def step():
    with torch.autocast(device, dtype=torch.bfloat16, enabled=FLAGS.dtype == "bfloat16"):
      loss = model(input_ids=inputs, labels=inputs).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss

  for _ in range(2):
    step()
  if device == "cuda":
    torch.cuda.synchronize()
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    loss = step()
  float(loss)
  return (time.perf_counter() - start) / FLAGS.steps


def main(argv):
  del argv
  jax.config.update("jax_default_matmul_precision", "tensorfloat32" if FLAGS.matmul_precision == "tf32" else "highest")
  tokens = np.random.default_rng(0).integers(0, FLAGS.vocab_size, size=(FLAGS.batch_size, FLAGS.seq_len))
  ours_s, n_params, compile_s = _ours(tokens)
  reference_s = _reference(tokens)
  per_step = FLAGS.batch_size * FLAGS.seq_len
  ours_rate, reference_rate = per_step / ours_s, per_step / reference_s
  print(
    f"devices: jax {jax.devices()[0].platform} x{jax.device_count()}, torch "
    f"{'cuda' if torch.cuda.is_available() else 'cpu'}; Pythia d={FLAGS.d_model} L={FLAGS.n_layers} "
    f"V={FLAGS.vocab_size} ({n_params / 1e6:.1f}M params), batch {FLAGS.batch_size} x {FLAGS.seq_len}, "
    f"{FLAGS.dtype}, fp32 matmuls: {FLAGS.matmul_precision} on both sides, AdamW, our attention: "
    f"{FLAGS.attention}, scan_layers: {FLAGS.scan_layers}, remat: {FLAGS.remat}"
  )
  print(
    f"iml-jax train step:        {ours_rate:10.0f} tokens/s ({ours_s * 1e3:.1f} ms/step, compiled in {compile_s:.1f} s)"
  )
  print(f"transformers + torch step: {reference_rate:10.0f} tokens/s ({reference_s * 1e3:.1f} ms/step)")
  if FLAGS.peak_tflops:
    flops_per_token = 6 * n_params + 12 * FLAGS.n_layers * FLAGS.d_model * FLAGS.seq_len
    print(
      f"iml-jax MFU: {ours_rate * flops_per_token / (FLAGS.peak_tflops * 1e12):.1%} of {FLAGS.peak_tflops:.0f} "
      f"TFLOP/s; FLOPs/token = 6 N + 12 L d T = 6 x {n_params / 1e6:.1f}M + 12 x {FLAGS.n_layers} x "
      f"{FLAGS.d_model} x {FLAGS.seq_len} (N: parameters without the input embedding)"
    )
  print(f"RESULT train_throughput ratio={ours_rate / reference_rate:.2f}")


if __name__ == "__main__":
  app.run(main)
