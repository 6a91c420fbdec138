"""A run's programs compiled for one TPU type (`compile_plan` lowers them, `compiled_stats` reads the compiled
executables), and the table `tpu_plan` prints of them: memory per chip against the chip's HBM, the largest train
step's FLOPs, bytes, collectives and roofline bound, the run's chip-hours at that bound."""

import dataclasses
import math
import os
import re
import sys
import time

from iml_jax import io_utils
from iml_jax.tpu_types import GiB

PROGRAM_KINDS = ("train", "decode", "alignment")


@dataclasses.dataclass
class Program:
  """One compiled program of the run on one TPU type: its figures per chip, or why the compiler refused it."""

  name: str
  stats: object = None  # compiled_stats.ProgramStats
  out_of_memory: str = ""  # the compiler's words when the program does not fit
  seconds: float = 0.0  # compile time here
  same_as: str = ""  # a stage whose program this one is, up to constants

  def gib(self) -> float:
    """GiB per chip: the compiled program's, or what the compiler said it would need."""
    if self.stats:
      return self.stats.total_bytes / GiB
    needed = re.search(r"\(([\d.]+)G\) exceeds", self.out_of_memory)
    return float(needed.group(1)) if needed else math.inf  # XLA's "G" are GiB


@dataclasses.dataclass
class Plan:
  kind: object  # tpu_types.TpuType
  mesh_shape: dict
  programs: list
  step: object  # the largest train step's ProgramStats (None: a step did not compile)
  run_step_seconds: float  # the whole run's training steps at the bound, summed

  def fits(self) -> bool:
    return all(p.stats and p.stats.total_bytes <= self.kind.device_hbm_bytes for p in self.programs)

  def step_bound(self) -> float:
    return roofline_seconds(self.step.flops, self.step.bytes_accessed, self.kind)


def roofline_seconds(flops: float, accessed: float, kind) -> float:
  """The least time one chip of `kind` needs for `flops` and `accessed` bytes: at its peak or its bandwidth."""
  return max(flops / kind.device_peak_flops, accessed / kind.device_hbm_bytes_per_s)


def _compile(name: str, lowered, parts=(), dump_to: str = "", flops: float = 0.0) -> Program:
  """`lowered` compiled (and its `parts`: see compiled_stats.stats); a program larger than the chip's memory is
  reported with the compiler's words. `dump_to`: a path prefix for the optimised HLO of the program and parts.
  `flops`: the program's own FLOPs per device, in place of the compiler's count of the partitioned program."""
  import jax

  from iml_jax import compiled_stats

  print(f"  compiling {name} ...", file=sys.stderr, flush=True)  # minutes for a billion parameters
  start = time.perf_counter()
  try:
    compiled = lowered.compile()
    compiled_parts = [(part.compile(), times) for part, times in parts]
    if dump_to:
      for suffix, program in [("", compiled)] + [(f".part{i}", p) for i, (p, _) in enumerate(compiled_parts)]:
        io_utils.atomic_write_text(f"{dump_to}{suffix}.hlo.txt", program.as_text())
  except jax.errors.JaxRuntimeError as err:
    if "RESOURCE_EXHAUSTED" not in str(err):
      raise
    return Program(name, out_of_memory=str(err).splitlines()[0], seconds=time.perf_counter() - start)
  stats = compiled_stats.stats(compiled, compiled_parts)
  if flops:
    stats = dataclasses.replace(stats, flops=flops, partitioned_flops=stats.flops)
  return Program(name, stats, seconds=time.perf_counter() - start)


def plan_for(run, kind, kinds=PROGRAM_KINDS, dump_hlo: str = "") -> Plan:
  """Compiles the run's programs of the `kinds` named for one TPU type (their HLO written under `dump_hlo`)."""

  from iml_jax import compile_plan, sharding, tpu_types

  mesh = sharding.make_mesh(run.mesh.shape, tpu_types.topology_devices(kind))
  rules = sharding.rules_for(run.mesh.rules)
  dump = (lambda program: os.path.join(dump_hlo, f"{kind.name}.{program}")) if dump_hlo else (lambda program: "")
  programs, by_key, run_seconds, step = [], {}, 0.0, None
  for stage in run.stages if "train" in kinds else ():
    name = f"train {stage.name} ({stage.batch_size}" + (f" = {stage.grad_accum} x" if stage.grad_accum > 1 else "")
    name += f"{'' if stage.grad_accum == 1 else f' {stage.batch_size // stage.grad_accum}'} examples)"
    if stage.program_key in by_key:
      program = dataclasses.replace(by_key[stage.program_key], name=name, same_as=by_key[stage.program_key].name)
    else:
      program = _compile(
        name,
        *compile_plan.train_step_lowered(run, stage, mesh, rules),
        dump(f"train_{stage.name}"),
        compile_plan.train_step_flops(run, stage, rules, mesh),
      )
      by_key[stage.program_key] = program
    programs.append(program)
    if program.stats:
      if step is None or program.stats.flops > step.flops:
        step = program.stats
      run_seconds += (
        roofline_seconds(program.stats.flops, program.stats.bytes_accessed, kind) * stage.steps * stage.runs
      )
  if "decode" in kinds:
    programs.append(
      _compile(
        f"decode ({run.eval_batch} prompts of {run.prompt_width} + {run.max_new_tokens} new tokens)",
        compile_plan.decode_lowered(run, mesh, rules),
        dump_to=dump("decode"),
      )
    )
  if run.alignment and "alignment" in kinds:
    definitions, questions, chunk = run.alignment
    programs.append(
      _compile(
        f"gradient alignment ({definitions} definitions x {questions} questions, {chunk} at a time)",
        compile_plan.alignment_lowered(run, mesh, rules),
        dump_to=dump("alignment"),
      )
    )
  return Plan(kind, dict(mesh.shape), programs, step, run_seconds)


def _bound_line(flops: float, accessed: float, kind) -> str:
  """The roofline bound of a step and the FLOP-utilisation ceiling it implies."""
  bound, compute = roofline_seconds(flops, accessed, kind), flops / kind.device_peak_flops
  return f"bound {bound * 1e3:.3g} ms ({'FLOP' if compute >= bound else 'memory'}-bound), ceiling {compute / bound:.0%}"


def describe(plan: Plan, spec: str, breakdown: int = 0) -> list[str]:
  """The table of one TPU type, its collectives and its RESULT line."""
  kind, chip = plan.kind, plan.kind.chip
  unit = "chip" if chip.devices == 1 else "TensorCore (half a chip)"
  lines = [
    "",
    f"{kind.name}: {kind.chips} chips ({kind.topology}), mesh {plan.mesh_shape}; per {unit}: "
    f"{kind.device_hbm_bytes / GiB:g} GiB HBM, {kind.device_peak_flops / 1e12:g} TFLOP/s bf16, "
    f"{kind.device_hbm_bytes_per_s / 1e9:g} GB/s ({chip.source})",
    f"  {'program':<58} {'args':>7} {'outputs':>8} {'temps':>7} {'total':>7}  {'of HBM':>6}  compiled",
  ]
  for p in plan.programs:
    if p.same_as:
      lines.append(f"  {p.name:<58} the program of {p.same_as.split(' (')[0]} (constants aside)")
    elif p.stats is None:
      lines.append(f"  {p.name:<58} DOES NOT FIT: {p.out_of_memory}")
    else:
      s = p.stats
      share = s.total_bytes / kind.device_hbm_bytes
      cells = [s.argument_bytes, s.output_bytes, s.temp_bytes, s.total_bytes]
      lines.append(
        f"  {p.name:<58} "
        + " ".join(f"{b / GiB:7.2f}" for b in cells)
        + f"  {share:6.0%}  {p.seconds:5.0f} s"
        + ("" if s.total_bytes <= kind.device_hbm_bytes else "  DOES NOT FIT")
      )
  lines.append("  (GiB per chip: arguments, outputs not written over donated arguments, temporaries, and with code)")
  fits = plan.fits()
  if plan.step is None:
    trained = any(p.name.startswith("train") for p in plan.programs)
    lines.append(f"  train step: {'too large to compile' if trained else 'not planned (--programs)'}, no time bound")
    bound = hours = tflop = gb = math.nan
  else:
    step, bound = plan.step, plan.step_bound()
    devices = math.prod(plan.mesh_shape.values())
    tflop, gb, intensity = step.flops / 1e12, step.bytes_accessed / 1e9, step.flops / max(step.bytes_accessed, 1)
    ridge = kind.device_peak_flops / kind.device_hbm_bytes_per_s
    hours = plan.run_step_seconds * kind.devices / 3600
    collectives = ", ".join(f"{k} {n} ({b / 1e9:.3g} GB)" for k, (n, b) in step.collectives.items())
    lines += [
      f"  largest train step per chip: {tflop:.3g} TFLOP (the program's, over {devices} devices; XLA:TPU counts "
      f"{step.partitioned_flops / 1e12:.3g} in the partitioned program), {gb:.3g} GB accessed, {intensity:.0f} "
      f"FLOP/byte (ridge {ridge:.0f}); roofline {_bound_line(step.flops, step.bytes_accessed, kind)} (FLOP "
      "utilisation)",
      f"  the same with its HBM traffic as the optimised HLO's top-level arrays in HBM ({step.hbm_bytes / 1e9:.3g} GB; "
      f"XLA's count above also has each fused operation's reads): {_bound_line(step.flops, step.hbm_bytes, kind)}",
      *([f"  XLA:TPU's own estimate of its time: {step.optimal_seconds * 1e3:.3g} ms"] if step.optimal_seconds else []),
      f"  collectives in it: {collectives or 'none'}",
      *(["  its largest sources of HBM bytes (top-level instructions, tiles unpadded):"] if breakdown else []),
      *(f"    {size / 1e9:8.3g} GB  {source}" for source, size in step.bytes_by_source.most_common(breakdown)),
      f"  whole run: {hours:.3g} chip-hours at the bound (every stage's training steps over all seeds; evaluation "
      "not included)",
    ]
  gib = max(p.gib() for p in plan.programs if not p.same_as)
  if not fits:
    worst = max((p for p in plan.programs if not p.same_as), key=lambda p: p.gib())
    need = worst.gib()
    over = f": {need:.2f} GiB, {need - kind.device_hbm_bytes / GiB:.2f} over" if math.isfinite(need) else ""
    lines.append(f"  does not fit: {worst.name}{over}")
  lines.append(
    "  compile-time estimates from XLA's memory and cost analyses, not measurements (a step's FLOPs: its program's "
    "before partitioning; an accumulating step's FLOPs and bytes: its micro-batch pass and update apart, summed)"
  )
  lines.append(
    f"RESULT tpu_plan config={spec} tpu={kind.name} fits={'yes' if fits else 'no'} gib_per_chip={gib:.2f} "
    f"step_tflop={tflop:.4g} step_gb={gb:.4g} step_seconds_bound={bound:.4g} run_chip_hours_bound={hours:.4g}"
  )
  return lines


def what_fits(plans: list, mesh_spec) -> str:
  """Where some planned type does not fit: the smallest planned one that does, or what to change."""
  fitting = [p for p in plans if p.fits()]
  if fitting:
    return (
      f"smallest planned type that fits: {min(fitting, key=lambda p: p.kind.chips * p.kind.chip.hbm_bytes).kind.name}"
    )
  if all(p.mesh_shape["fsdp"] == 1 for p in plans):
    return (
      f"no planned type fits with the state replicated on every chip (mesh.rules {mesh_spec.rules!r}, mesh.shape "
      f"{tuple(mesh_spec.shape)}): shard it with --config.mesh.rules=fsdp '--config.mesh.shape=(1,-1,1)'"
    )
  return "no planned type fits: plan a larger slice (--tpu), whose chips hold smaller shards of the state"


def described(run) -> str:
  import jax

  from iml_jax.models import registry

  count = sum(a.size for a in jax.tree.leaves(registry.abstract_params(run.model)))
  return f"{registry.name_of(run.model.cfg)} model of {count:,} parameters ({run.model.cfg.dtype} compute)"
