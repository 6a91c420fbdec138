r"""Where our train step spends its time: a `jax.profiler` trace of a few steps, summed per XLA operation.

Builds the step as `study_step.py` does (a Pythia shape by name, 48-token sequences, the study's Adafactor, or
AdamW) and prints the operations that take the most time per step, each with its result shape and the model code
it comes from (the HLO's `op_name`), then the share of matrix products and how much the operations overlap. On
accelerators the device's "XLA Ops" timeline is read; on CPU every thread that runs XLA operations: the worker
pool's, and the client's own, which runs them inline when the pool is small. On CPU, operations that run at the
same time share the cores, so their summed time can exceed the step's (the last line says by how much);
`taskset -c 0 python ...` gives per-operation costs without overlap. The trace folder is kept (`--trace_dir`)
for TensorBoard/XProf.

Command (CPU):  python benchmarks/profile_step.py --model=pythia-14m --batch_size=8 --dtype=float32
Command (GPU):  python benchmarks/profile_step.py --model=pythia-1b --batch_size=128 --grad_accum=2
"""

import collections
import glob
import re

from absl import app, flags
import jax

import common
import host_malloc
from iml_jax import config_blocks

FLAGS = flags.FLAGS
common.define_study_step_flags(default_steps=3)
flags.DEFINE_integer("top", 25, "operations listed")
flags.DEFINE_enum("optimizer", "adafactor", ["adafactor", "adamw"], "the study's Adafactor, or AdamW")
flags.DEFINE_string("trace_dir", "/tmp/iml_jax_profile", "where the trace is written")

# CPU runtime events that are not operations: the executor's and thread pool's, which contain operations, and
# the thread-pool listener's markers
_NOT_OPERATIONS = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "end: ")
_CPU_OPERATION_THREADS = ("XLAEigen", "XLAPjRtCpuClient")  # the intra-op pool, and the client's thread (inline)


def op_events(trace_dir: str) -> list[tuple[str, int, int]]:
  """(XLA operation name, start ns, duration ns) of every operation in the trace."""
  data = jax.profiler.ProfileData.from_file(sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1])
  device_planes = [p for p in data.planes if p.name.startswith("/device:")]
  events = []
  for plane in device_planes or data.planes:
    for line in plane.lines:
      if device_planes and line.name != "XLA Ops":
        continue
      if not device_planes and not any(thread in line.name for thread in _CPU_OPERATION_THREADS):
        continue
      events += [(e.name, e.start_ns, e.duration_ns) for e in line.events if not e.name.startswith(_NOT_OPERATIONS)]
  return events


def busy_ns(events: list[tuple[str, int, int]]) -> int:
  """Nanoseconds during which at least one of `events` runs (the union of their intervals)."""
  busy, end = 0, None
  for _, start, duration in sorted(events, key=lambda e: e[1]):
    if end is None or start > end:
      busy, end = busy + duration, start + duration
    elif start + duration > end:
      busy, end = busy + start + duration - end, start + duration
  return busy


def main(argv):
  del argv
  common.apply_host_malloc(FLAGS.host_malloc)
  jax.config.update("jax_default_matmul_precision", "highest")
  shape, fields, tokens = common.study_step_inputs(FLAGS)
  optimizer = config_blocks.optimizer(name=FLAGS.optimizer)
  step, state, batch, _ = common.build_our_step(fields, optimizer, tokens, FLAGS.grad_accum)
  hlo = step.lower(state, batch).compile().as_text().splitlines()
  for _ in range(2):
    state, loss = step(state, batch)
  jax.block_until_ready(loss)
  with jax.profiler.trace(FLAGS.trace_dir):
    for _ in range(FLAGS.steps):
      state, loss = step(state, batch)
    jax.block_until_ready(loss)
  events = op_events(FLAGS.trace_dir)
  times = collections.Counter()
  for name, _, duration in events:
    times[name] += duration
  total = sum(times.values())
  if not total:
    raise SystemExit(f"no XLA operation events in the trace under {FLAGS.trace_dir}")

  instructions = {}  # HLO instruction name -> its line
  for text in hlo:
    match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", text)
    if match:
      instructions.setdefault(match.group(1), text)

  def described(name: str) -> str:
    line = instructions.get(name, "")
    result = line.split("=", 1)[1].split("{")[0].strip() if line else ""
    origin = re.search(r'op_name="([^"]*)"', line)
    return f"{result:24s} {origin.group(1)[-100:] if origin else ''}"

  print(
    f"devices: {jax.devices()[0].platform} x{jax.device_count()}; {FLAGS.model}, {FLAGS.batch_size} x "
    f"{FLAGS.grad_accum} x {FLAGS.seq_len} tokens per device, {FLAGS.dtype}, {FLAGS.optimizer}, attention "
    f"{common.attention_in_use(FLAGS.attention, FLAGS.seq_len, shape['d_model'] // shape['n_heads'], FLAGS.dtype)}"
    f", host malloc {host_malloc.in_effect(FLAGS.host_malloc)}; operation time per step "
    f"{total / FLAGS.steps / 1e6:.1f} ms (summed over threads/streams)"
  )
  for name, ns in times.most_common(FLAGS.top):
    print(f"{ns / FLAGS.steps / 1e6:9.2f} ms {ns / total:6.1%}  {name:34s} {described(name)}")
  products = sum(
    ns for name, ns in times.items() if re.search(r"dot_general| dot\(|convolution", instructions.get(name, ""))
  )
  print(f"matrix products (operations whose HLO is or fuses a dot): {products / total:.1%} of the operation time")
  busy = busy_ns(events)
  print(
    f"some operation runs {busy / FLAGS.steps / 1e6:.1f} ms per step; summed operation time / that = "
    f"{total / busy:.2f} (operations that overlap share the {jax.devices()[0].platform} device)"
  )


if __name__ == "__main__":
  app.run(main)
