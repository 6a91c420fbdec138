r"""Training throughput: iml-jax's jitted, sharded, donated train step vs a Hugging Face PyTorch GPT-NeoX step.

Same Pythia-shaped config, batch, sequence length and optimizer (AdamW, fp32 master weights) on the same
device; tokens/s over `--steps` timed steps after warm-up (compilation excluded). On an accelerator
`--dtype=bfloat16` runs our compute in bf16 and the reference under `torch.autocast(bfloat16)`, and MFU
(6 · parameters + attention FLOPs per token, against `--peak_tflops`) is printed for ours.

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


def _ours(tokens: np.ndarray) -> tuple[float, int, float]:
  """(seconds per step, parameter count, seconds to compile the step)."""
  cfg = registry.make_config("gpt_neox", vocab_size=FLAGS.vocab_size, d_model=FLAGS.d_model,
                             n_layers=FLAGS.n_layers, n_heads=FLAGS.n_heads, d_mlp=4 * FLAGS.d_model,
                             max_len=FLAGS.seq_len, dtype=FLAGS.dtype, attention=FLAGS.attention,
                             scan_layers=FLAGS.scan_layers, remat=FLAGS.remat)
  model = registry.build(cfg)
  mesh = sharding.make_mesh((-1, 1, 1))
  rules = sharding.rules_for("dp")
  adamw = types.SimpleNamespace(name="adamw", lr=1e-4, warmup_frac=0.0, b1=0.9, b2=0.999, eps=1e-8,
                                weight_decay=0.0, grad_clip=0.0)  # torch.optim.AdamW's defaults, no decay
  optimizer = train.make_optimizer(adamw, 10 ** 6)
  abstract = train.abstract_state(model, optimizer, mesh, rules)
  state = train.create_state(model, optimizer, abstract, jax.random.key(0))
  layout = {"tokens": sharding.batch_sharding(mesh, rules, 2), "loss_mask": sharding.batch_sharding(mesh, rules, 2),
            "weights": sharding.batch_sharding(mesh, rules, 1)}
  step = train.make_train_step(model, optimizer, 1, train.shardings_of(abstract), layout)
  batch = {"tokens": tokens.astype(np.int32), "loss_mask": np.ones((len(tokens), FLAGS.seq_len - 1), np.float32),
           "weights": np.ones(len(tokens), np.float32)}
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
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  return (time.perf_counter() - start) / FLAGS.steps, n_params, compile_s


def _reference(tokens: np.ndarray) -> float:
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
      vocab_size=FLAGS.vocab_size, hidden_size=FLAGS.d_model, num_hidden_layers=FLAGS.n_layers,
      num_attention_heads=FLAGS.n_heads, intermediate_size=4 * FLAGS.d_model,
      max_position_embeddings=FLAGS.seq_len)).to(device).train()
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
  tokens = np.random.default_rng(0).integers(0, FLAGS.vocab_size, size=(FLAGS.batch_size, FLAGS.seq_len))
  ours_s, n_params, compile_s = _ours(tokens)
  reference_s = _reference(tokens)
  per_step = FLAGS.batch_size * FLAGS.seq_len
  ours_rate, reference_rate = per_step / ours_s, per_step / reference_s
  print(f"devices: jax {jax.devices()[0].platform} x{jax.device_count()}, torch "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'}; Pythia d={FLAGS.d_model} L={FLAGS.n_layers} "
        f"V={FLAGS.vocab_size} ({n_params / 1e6:.1f}M params), batch {FLAGS.batch_size} x {FLAGS.seq_len}, "
        f"{FLAGS.dtype}, AdamW, our attention: {FLAGS.attention}, scan_layers: {FLAGS.scan_layers}, "
        f"remat: {FLAGS.remat}")
  print(f"iml-jax train step:        {ours_rate:10.0f} tokens/s ({ours_s * 1e3:.1f} ms/step, "
        f"compiled in {compile_s:.1f} s)")
  print(f"transformers + torch step: {reference_rate:10.0f} tokens/s ({reference_s * 1e3:.1f} ms/step)")
  if FLAGS.peak_tflops:
    flops_per_token = 6 * n_params + 12 * FLAGS.n_layers * FLAGS.d_model * FLAGS.seq_len
    print(f"iml-jax MFU: {ours_rate * flops_per_token / (FLAGS.peak_tflops * 1e12):.1%} "
          f"(of {FLAGS.peak_tflops:.0f} TFLOP/s)")
  print(f"RESULT train_throughput ratio={ours_rate / reference_rate:.2f}")


if __name__ == "__main__":
  app.run(main)
