"""What the benchmarks share: Pythia shapes by name, our jitted train step and the Hugging Face GPT-NeoX step
built alike and timed alike, each side's matmul peak on this device, and peak memory.

Each function returns numbers; the scripts print them.
"""

import dataclasses
import resource
import time
from typing import Callable

import jax
import numpy as np

import host_malloc
from iml_jax import sharding, train
from iml_jax.errors import IMLError
from iml_jax.models import layers, registry
from iml_jax.models.families import gpt_neox

PYTHIA_VOCAB = 50304  # every Pythia's padded vocabulary
# Pythia-14m is not in the study (its smallest is 70m) but is a quick first check of a new device.
PYTHIA = {
  "pythia-14m": dict(d_model=128, n_layers=6, n_heads=4, d_mlp=512),
  **{name: shape for name, (_, shape) in gpt_neox.PRETRAINED.items()},
}


def adopt_host_malloc_flag() -> None:
  """--host_malloc (benchmarks/host_malloc.py) in this benchmark's --help, for `apply_host_malloc` first thing in main
  (before either framework starts its threads)."""
  from absl import flags

  flags.adopt_module_key_flags(host_malloc)


def apply_host_malloc(choice: str) -> None:
  """`host_malloc.apply(choice)`, a refusal printed as one line with a non-zero exit."""
  try:
    host_malloc.apply(choice)
  except IMLError as error:
    raise SystemExit(f"error: {error}") from None


def define_study_step_flags(default_steps: int) -> None:
  """The flags that say which study step to build: shape, vocabulary, batch, sequence, dtype, attention, and
  --host_malloc."""
  from absl import flags

  adopt_host_malloc_flag()
  flags.DEFINE_enum("model", "pythia-70m", list(PYTHIA), "Pythia shape (random weights)")
  flags.DEFINE_integer("vocab_size", PYTHIA_VOCAB, "vocabulary rows (Pythia's: 50,304; smaller for quick tests)")
  flags.DEFINE_integer("batch_size", 16, "sequences per device per micro-batch (the study: 128)")
  flags.DEFINE_integer("grad_accum", 1, "micro-batches per optimizer step (the study: 2)")
  flags.DEFINE_integer("seq_len", 48, "tokens per sequence (the study's block size: 48)")
  flags.DEFINE_integer("steps", default_steps, "timed or traced steps")
  flags.DEFINE_enum("dtype", "bfloat16", ["float32", "bfloat16"], "compute dtype; weights stay fp32 (the study: bf16)")
  define_attention_flag()
  flags.DEFINE_integer("loss_chunk", 0, "positions per chunk of our output projection and loss (0: all at once)")


def define_attention_flag() -> None:
  from absl import flags

  flags.DEFINE_enum(
    "attention", "auto", list(layers.ATTENTION_IMPLEMENTATIONS), "our attention implementation (auto: per backend)"
  )


def attention_in_use(choice: str, seq_len: int, head_dim: int, dtype: str) -> str:
  """`choice`, and what it runs in a training step of `seq_len`-token sequences (inputs: seq_len - 1) here."""
  resolved = layers.resolve_attention(choice, True, seq_len - 1, head_dim, dtype)
  return choice if resolved == choice else f"{choice} ({resolved} here)"


def study_step_inputs(flag_values) -> tuple[dict, dict, np.ndarray]:
  """(the Pythia shape, our model config fields, random tokens for every device) from `define_study_step_flags`."""
  shape = shape_of(flag_values.model)
  fields = dict(
    vocab_size=flag_values.vocab_size,
    max_len=flag_values.seq_len,
    dtype=flag_values.dtype,
    attention=flag_values.attention,
    loss_chunk=flag_values.loss_chunk,
    **shape,
  )
  rows = flag_values.batch_size * flag_values.grad_accum * jax.device_count()
  tokens = np.random.default_rng(0).integers(0, flag_values.vocab_size, size=(rows, flag_values.seq_len))
  return shape, fields, tokens


def shape_of(name: str) -> dict:
  """`name`'s shape as our config fields, or an error listing the names there are."""
  if name not in PYTHIA:
    raise SystemExit(f"--model={name!r}: expected one of {', '.join(PYTHIA)}")
  return PYTHIA[name]


def hf_config_kwargs(shape: dict, vocab_size: int, seq_len: int) -> dict:
  """The same shape as `transformers.GPTNeoXConfig` arguments."""
  return dict(
    vocab_size=vocab_size,
    hidden_size=shape["d_model"],
    num_hidden_layers=shape["n_layers"],
    num_attention_heads=shape["n_heads"],
    intermediate_size=shape["d_mlp"],
    max_position_embeddings=seq_len,
  )


@dataclasses.dataclass
class Side:
  """One side of a comparison, built and warmed up: `run(steps)` takes `steps` steps and returns their seconds."""

  run: Callable[[int], float]
  parameters: int  # without the input embedding table (a lookup: no FLOPs)
  peak_memory_mib: Callable[[], float | None]  # device memory, where the device reports it
  compile_seconds: float = 0.0


@dataclasses.dataclass
class Timing:
  seconds_per_step: float  # the median over the rounds
  compile_seconds: float = 0.0
  peak_memory_mib: float | None = None
  page_faults_per_step: float = 0.0  # the process's minor page faults while the timed steps ran


def _minor_page_faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def jax_peak_memory_mib() -> float | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in stats else None


def build_our_step(model_fields: dict, opt_cfg, tokens: np.ndarray, grad_accum: int):
  """(our jitted, donated train step over all devices, a fresh state, `tokens` as its batch, the parameters
  without the input embedding table) — `train.make_train_step` as a run builds it."""
  model = registry.build(registry.make_config("gpt_neox", **model_fields))
  mesh = sharding.make_mesh((-1, 1, 1))
  rules = sharding.rules_for("dp")
  sharding.use_mesh(mesh, rules).__enter__()  # as a run sets them, for the rest of the process
  optimizer = train.make_optimizer(opt_cfg, 10**6)
  abstract = train.abstract_state(model, optimizer, mesh, rules)
  state = train.create_state(model, optimizer, abstract, jax.random.key(0))
  layout = {
    "tokens": sharding.batch_sharding(mesh, rules, 2),
    "loss_mask": sharding.batch_sharding(mesh, rules, 2),
    "weights": sharding.batch_sharding(mesh, rules, 1),
  }
  step = train.make_train_step(model, optimizer, grad_accum, train.shardings_of(abstract), layout)
  batch = {
    "tokens": tokens.astype(np.int32),
    "loss_mask": np.ones((len(tokens), tokens.shape[1] - 1), np.float32),
    "weights": np.ones(len(tokens), np.float32),
  }
  batch = {k: sharding.put_global_batch(v, layout[k]) for k, v in batch.items()}
  parameters = sum(x.size for x in jax.tree.leaves(state.params)) - state.params["embed_in"]["embedding"].size
  return step, state, batch, parameters


def our_side(model_fields: dict, opt_cfg, tokens: np.ndarray, grad_accum: int) -> Side:
  """Our step (`build_our_step`) on one batch of `tokens`, compiled (timed apart) and warmed up by two steps."""
  step, state, batch, parameters = build_our_step(model_fields, opt_cfg, tokens, grad_accum)
  start = time.perf_counter()
  step.lower(state, batch).compile()
  compile_seconds = time.perf_counter() - start
  latest = {"state": state}

  def run(steps: int) -> float:
    state, start = latest["state"], time.perf_counter()
    for _ in range(steps):
      state, loss = step(state, batch)
    jax.block_until_ready(loss)
    seconds = time.perf_counter() - start
    latest["state"] = state
    if not np.isfinite(float(loss)):
      raise SystemExit(f"our train step's loss is {float(loss)}")
    return seconds

  run(2)
  return Side(run, parameters, jax_peak_memory_mib, compile_seconds)


def torch_device() -> str:
  import torch

  return "cuda" if torch.cuda.is_available() else "cpu"


def set_matmul_precision(precision: str) -> None:
  """fp32 matrix products at the same precision on both sides: "highest" (TF32 off) or "tf32" (on)."""
  import torch

  tf32 = precision == "tf32"
  jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")
  torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
  torch.set_float32_matmul_precision("high" if tf32 else "highest")


def torch_side(hf_kwargs: dict, make_optimizer: Callable, tokens: np.ndarray, grad_accum: int, bf16: bool) -> Side:
  """A `transformers` GPT-NeoX step as the HF Trainer takes it: forward/backward per micro-batch (under
  `torch.autocast(bfloat16)` when `bf16`), then `make_optimizer(model)`'s `step()` (clipping included); warmed up
  by two steps."""
  import torch
  import transformers

  device = torch_device()
  torch.manual_seed(0)
  model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**hf_kwargs)).to(device).train()
  step_optimizer = make_optimizer(model)
  micro_batches = torch.tensor(tokens, device=device).chunk(grad_accum)

  def step():
    for inputs in micro_batches:
      with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        loss = model(input_ids=inputs, labels=inputs).loss / grad_accum
      loss.backward()
    step_optimizer()
    model.zero_grad(set_to_none=True)
    return loss

  def run(steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
      loss = step()
    loss.item()
    return time.perf_counter() - start

  run(2)
  if device == "cuda":
    torch.cuda.reset_peak_memory_stats()
  parameters = sum(p.numel() for p in model.parameters()) - model.gpt_neox.embed_in.weight.numel()
  return Side(run, parameters, torch_peak_memory_mib)


def torch_peak_memory_mib() -> float | None:
  import torch

  return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


@dataclasses.dataclass
class Comparison:
  ours: Timing
  reference: Timing
  ratios: list[float]  # per round: the reference's seconds per step / ours

  @property
  def ratio(self) -> float:
    return float(np.median(self.ratios))


def time_side_by_side(ours: Side, reference: Side, steps: int, rounds: int) -> Comparison:
  """`rounds` rounds of `steps` steps of each side, the sides alternating (which goes first alternates too), so
  that a machine slowing down or speeding up during the run weighs on both: each side's median seconds per step
  and the per-round ratios."""
  seconds = {"ours": [], "reference": []}
  faults = dict.fromkeys(seconds, 0)
  sides = {"ours": ours, "reference": reference}
  for round_index in range(rounds):
    for name in ("ours", "reference") if round_index % 2 == 0 else ("reference", "ours"):
      before = _minor_page_faults()
      seconds[name].append(sides[name].run(steps) / steps)
      faults[name] += _minor_page_faults() - before
  timings = {
    name: Timing(
      float(np.median(seconds[name])),
      side.compile_seconds,
      side.peak_memory_mib(),
      faults[name] / (steps * rounds),
    )
    for name, side in sides.items()
  }
  ratios = [theirs / mine for mine, theirs in zip(seconds["ours"], seconds["reference"])]
  return Comparison(timings["ours"], timings["reference"], ratios)


def flops_per_token(parameters: int, n_layers: int, d_model: int, seq_len: int) -> int:
  """6 N + 12 L d T (PaLM, appendix B): N the parameters without the input embedding (the output projection
  counts), L layers, d width, T tokens per sequence; forward and backward."""
  return 6 * parameters + 12 * n_layers * d_model * seq_len


FLOPS_FORMULA = "FLOPs/token = 6 N + 12 L d T (N: parameters without the input embedding, T: tokens per sequence)"


def print_step_comparison(
  result: str, comparison: Comparison, tokens_per_step: int, flops: int, peaks: dict, dtype: str, peak_tflops
) -> None:
  """The lines both step benchmarks end with: FLOP formula, matmul ceilings, each side's rate (median seconds per
  step over the rounds), compile time, MFU, the per-round ratios, and `RESULT <result> ratio=<their median>` last."""
  ours, reference = comparison.ours, comparison.reference
  rate = {"ours": tokens_per_step / ours.seconds_per_step, "reference": tokens_per_step / reference.seconds_per_step}
  print(f"{FLOPS_FORMULA}: {flops / 1e6:.1f} MFLOP/token")
  print(f"large {dtype} matmul on this device: jax {peaks['jax']:.0f} GFLOP/s, torch {peaks['torch']:.0f} GFLOP/s")
  for side, name, timing in (("ours", "iml-jax", ours), ("reference", "transformers + torch", reference)):
    memory = "" if timing.peak_memory_mib is None else f", peak device memory {timing.peak_memory_mib:.0f} MiB"
    achieved = rate[side] * flops / 1e9
    print(
      f"{name:21s} {rate[side]:10.0f} tokens/s per device ({timing.seconds_per_step * 1e3:.1f} ms/step), "
      f"{achieved:.0f} GFLOP/s = {achieved / peaks['jax' if side == 'ours' else 'torch']:.0%} of the matmul's, "
      f"{timing.page_faults_per_step:.0f} host page faults/step{memory}"
    )
  print(f"iml-jax step compiled in {ours.compile_seconds:.1f} s")
  if peak_tflops:
    print(f"iml-jax MFU: {rate['ours'] * flops / (peak_tflops * 1e12):.1%} of {peak_tflops:.0f} TFLOP/s")
  print_rounds_and_result(result, comparison)


def print_rounds_and_result(result: str, comparison: Comparison) -> None:
  """The last two lines of a benchmark timed by `time_side_by_side`: each round's ratio, then their median."""
  print(f"ratio per round (the sides alternating): {' '.join(f'{r:.2f}' for r in comparison.ratios)}")
  print(f"RESULT {result} ratio={comparison.ratio:.2f}")


def matmul_peak_gflops(dtype: str = "float32", n: int = 0) -> dict[str, float]:
  """GFLOP/s of a large square matrix product in JAX and in torch on this device: the ceiling each side's
  achieved rate is compared with. n: the matrix size (0: 2048 on CPU, 8192 on accelerators)."""
  import torch

  device = torch_device()
  n = n or (8192 if device == "cuda" else 2048)
  flops = 2 * n**3
  a = jax.numpy.ones((n, n), dtype)
  product = jax.jit(lambda x: x @ x)
  product(a).block_until_ready()
  start, repeats = time.perf_counter(), 5
  for _ in range(repeats):
    out = product(a)
  out.block_until_ready()
  ours = flops * repeats / (time.perf_counter() - start) / 1e9
  t = torch.ones((n, n), dtype=getattr(torch, dtype), device=device)
  t @ t
  if device == "cuda":
    torch.cuda.synchronize()
  start = time.perf_counter()
  for _ in range(repeats):
    result = t @ t
  float(result[0, 0])
  theirs = flops * repeats / (time.perf_counter() - start) / 1e9
  return {"jax": ours, "torch": theirs}


def peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
