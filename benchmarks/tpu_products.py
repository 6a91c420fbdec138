r"""What XLA:TPU's own cost model says of the study step's matrix products at the shapes one chip computes them,
compiled with no TPU attached (libtpu's compiler, the `tpu` extra): does the step's memory traffic or its arithmetic
bound it, and how close to the chip's peak can its products run?

Each product of a Pythia layer (query, key, value and output projections; the MLP's two) and of the output head,
for `--tokens` tokens on one chip: forward (x·W), input gradient (dy·Wᵀ) and weight gradient (xᵀ·dy), in bf16,
each compiled alone for one chip of `--tpu`. Per product: its FLOPs; XLA's `bytes accessed` against the bytes of
its operands and result in HBM (the least a product can move); XLA:TPU's own time estimate (`optimal_seconds`) and
the share of the chip's peak it implies. Then the sum over the model's products (each layer's once per layer):
the products are nearly all of a step's FLOPs, so their share of peak is a ceiling on the step's FLOP utilisation
in the compiler's own model. Compile-time estimates, not measurements.

Tokens per chip: the study's batch of 256 sequences of 47 scored positions over 8 chips is 1,504 in one pass and
752 per pass in the study's two (`--tokens=752`).

Command:  python benchmarks/tpu_products.py --model=pythia-2.8b --tpu=v5litepod-8 --tokens=1504
Last line: `RESULT tpu_products model=<name> tokens=<n> tflop=<float> xla_gb=<float> operands_gb=<float>
estimate_ms=<float> peak_share=<float>`.
"""

from absl import app, flags

import common

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "pythia-2.8b", list(common.PYTHIA), "a Pythia shape by name")
flags.DEFINE_integer("vocab_size", common.PYTHIA_VOCAB, "rows of the output head")
flags.DEFINE_integer("tokens", 1504, "tokens one chip computes in one pass")
flags.DEFINE_string("tpu", "v5litepod-8", "the TPU type whose chip compiles the products")

_DIRECTIONS = ("forward", "input gradient", "weight gradient")


def _products(shape: dict, vocab: int) -> list[tuple[str, int, int, int]]:
  """(name, input width, output width, times in the model) of each distinct product."""
  d, layers = shape["d_model"], shape["n_layers"]
  return [
    ("attention projections", d, d, 4 * layers),
    ("mlp in", d, shape["d_mlp"], layers),
    ("mlp out", shape["d_mlp"], d, layers),
    ("output head", d, vocab, 1),
  ]


def _cost(device, direction: str, tokens: int, width_in: int, width_out: int) -> tuple[float, float, float, int]:
  """(FLOPs, XLA's bytes accessed, XLA:TPU's seconds, bytes of operands and result) of one product compiled."""
  import jax
  import jax.numpy as jnp

  one_chip = jax.sharding.SingleDeviceSharding(device)
  x, w, y = ((tokens, width_in), (width_in, width_out), (tokens, width_out))
  operands, result, program = {
    "forward": ((x, w), y, lambda a, b: a @ b),
    "input gradient": ((y, w), x, lambda dy, b: dy @ b.T),
    "weight gradient": ((x, y), w, lambda a, dy: a.T @ dy),
  }[direction]
  args = [jax.ShapeDtypeStruct(s, jnp.bfloat16, sharding=one_chip) for s in operands]
  cost = jax.jit(program).lower(*args).compile().cost_analysis()
  moved = 2 * sum(a * b for a, b in (*operands, result))
  return cost["flops"], cost["bytes accessed"], cost.get("optimal_seconds", 0.0), moved


def main(argv):
  del argv
  from iml_jax import tpu_types
  from iml_jax.errors import IMLError

  try:
    kind = tpu_types.tpu_type(FLAGS.tpu)
    device = tpu_types.topology_devices(kind)[0]
  except IMLError as err:
    raise SystemExit(f"tpu_products: {err}") from None
  peak = kind.device_peak_flops
  print(
    f"{FLAGS.model} products for {FLAGS.tokens} tokens on one {kind.name} chip ({peak / 1e12:g} TFLOP/s bf16, "
    f"{kind.device_hbm_bytes_per_s / 1e9:g} GB/s): compile-time estimates from XLA:TPU's cost model"
  )
  print(f"  {'product':<40} {'GFLOP':>8} {'XLA MB':>8} {'moved MB':>9} {'XLA/moved':>9} {'est. ms':>8} {'of peak':>7}")
  total = [0.0, 0.0, 0.0, 0.0]
  for name, width_in, width_out, times in _products(common.PYTHIA[FLAGS.model], FLAGS.vocab_size):
    for direction in _DIRECTIONS:
      flops, accessed, seconds, moved = _cost(device, direction, FLAGS.tokens, width_in, width_out)
      label = f"{name} {width_in}x{width_out} {direction}"
      print(
        f"  {label:<40} {flops / 1e9:8.1f} {accessed / 1e6:8.1f} {moved / 1e6:9.1f} {accessed / moved:9.2f} "
        f"{seconds * 1e3:8.3f} {flops / peak / seconds if seconds else float('nan'):7.0%}"
      )
      for i, value in enumerate((flops, accessed, seconds, moved)):
        total[i] += times * value
  flops, accessed, seconds, moved = total
  share = flops / peak / seconds if seconds else float("nan")  # nan: this libtpu gives no time estimate
  print(
    f"  the model's products, each layer's once per layer: {flops / 1e12:.3g} TFLOP, XLA counts "
    f"{accessed / 1e9:.3g} GB against {moved / 1e9:.3g} GB of operands and results; XLA:TPU's estimate "
    f"{seconds * 1e3:.4g} ms, {share:.0%} of peak"
  )
  print(
    f"RESULT tpu_products model={FLAGS.model} tokens={FLAGS.tokens} tflop={flops / 1e12:.4g} "
    f"xla_gb={accessed / 1e9:.4g} operands_gb={moved / 1e9:.4g} estimate_ms={seconds * 1e3:.4g} "
    f"peak_share={share:.3f}"
  )


if __name__ == "__main__":
  app.run(main)
