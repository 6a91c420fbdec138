"""What a compiled program costs one device, as its compiler says: memory (`memory_analysis`), FLOPs and bytes
accessed (`cost_analysis`), and the collectives in its optimised HLO. Compile-time estimates, not measurements."""

import collections
import dataclasses
import math
import re

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4}
_DTYPE_BYTES |= {"f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}
# `%name = <result shape> <op>(<rest of the line>`: a collective, synchronous or the start of an asynchronous one; the
# rest holds its channel id
_INSTRUCTION = re.compile(r"=\s*(\(.*?\)|\S+)\s+(" + "|".join(COLLECTIVES) + r")(?:-start)?\((.*)")
_CHANNEL = re.compile(r"\bchannel_id=(\d+)")
_ARRAY = re.compile(r"([a-z]+\d*)\[([\d,]*)\](\{[^}]*\})?")


@dataclasses.dataclass(frozen=True)
class ProgramStats:
  """Per device: the arguments, the outputs not written over donated arguments, the temporaries and the code
  (bytes); FLOPs and bytes accessed of one execution; collectives by kind: (count, result bytes)."""

  argument_bytes: int
  output_bytes: int
  temp_bytes: int
  code_bytes: int
  flops: float
  bytes_accessed: float
  collectives: dict
  bytes_by_source: collections.Counter  # unpadded bytes of the top-level instructions by JAX source
  optimal_seconds: float = 0.0  # XLA:TPU's own estimate of the time (0: the backend gives none)
  partitioned_flops: float = 0.0  # the compiler's FLOPs where `flops` is the program's own count per device

  @property
  def hbm_bytes(self) -> float:
    """The estimate of HBM traffic: the top-level instructions' arrays in HBM (`bytes_by_source`)."""
    return float(sum(self.bytes_by_source.values()))

  @property
  def total_bytes(self) -> int:
    return self.argument_bytes + self.output_bytes + self.temp_bytes + self.code_bytes


def arrays_in(shape_text: str) -> list[tuple[int, bool, int]]:
  """(bytes, whether in HBM, rank) of each array in an HLO shape (`bf16[8,128]{1,0}`, or a tuple of them): a
  layout naming another memory space (`S(1)`: a TPU core's VMEM) is not HBM."""
  found = []
  for dtype, dims, layout in _ARRAY.findall(shape_text):
    sizes = [int(d) for d in dims.split(",") if d]
    found.append((math.prod(sizes) * _DTYPE_BYTES.get(dtype, 4), "S(" not in layout, len(sizes)))
  return found


def array_bytes(shape_text: str, hbm_only: bool = False) -> int:
  """Bytes of an HLO result shape (a tuple: its largest element, an async op's result); `hbm_only`: of arrays
  in HBM only."""
  return max([size for size, in_hbm, _ in arrays_in(shape_text) if in_hbm or not hbm_only], default=0)


def collectives(hlo_text: str) -> dict[str, tuple[int, int]]:
  """{kind: (count, bytes)} of the collectives in the program (a loop's body once). XLA:TPU splits an
  asynchronous collective fused with its neighbours into one computation per phase, each holding a copy of the
  collective under the same channel id, so a channel counts once."""
  found = collections.defaultdict(lambda: [0, 0])
  channels = set()
  for shape, kind, rest in _INSTRUCTION.findall(hlo_text):
    channel = _CHANNEL.search(rest)
    if channel:
      if (kind, channel.group(1)) in channels:
        continue
      channels.add((kind, channel.group(1)))
    found[kind][0] += 1
    found[kind][1] += array_bytes(shape)
  return {kind: tuple(found[kind]) for kind in COLLECTIVES if kind in found}


def stats(compiled, parts=()) -> ProgramStats:
  """`compiled`'s figures; its FLOPs, bytes accessed and collectives summed over `parts` instead where given:
  (compiled part, times it runs) that make up one execution of `compiled`."""
  memory, cost = compiled.memory_analysis(), compiled.cost_analysis()
  flops, accessed, seconds = (cost.get(k, 0.0) for k in ("flops", "bytes accessed", "optimal_seconds"))
  text = compiled.as_text()
  found, sources = collectives(text), bytes_by_source(text)
  if parts:
    flops, accessed, seconds, found, sources = 0.0, 0.0, 0.0, {}, collections.Counter()
    for part, times in parts:
      figures = stats(part)
      flops += times * figures.flops
      accessed += times * figures.bytes_accessed
      seconds += times * figures.optimal_seconds
      for kind, (count, size) in figures.collectives.items():
        have = found.get(kind, (0, 0))
        found[kind] = (have[0] + times * count, have[1] + times * size)
      sources.update({source: times * size for source, size in figures.bytes_by_source.items()})
    found = {kind: found[kind] for kind in COLLECTIVES if kind in found}
  return ProgramStats(
    memory.argument_size_in_bytes,
    memory.output_size_in_bytes - memory.alias_size_in_bytes,
    memory.temp_size_in_bytes,
    memory.generated_code_size_in_bytes,
    flops,
    accessed,
    found,
    sources,
    max(seconds, 0.0),
  )


_NOT_TRAFFIC = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast", "after-all", "partition-id"}
_NOT_TRAFFIC |= {"replica-id", "while", "conditional", "call", "opt-barrier"}


# ops that read only as much of their operand as they write
_READS_WHAT_IT_WRITES = {"slice", "slice-start", "dynamic-slice", "gather"}


def _balanced(text: str, start: int) -> int:
  """The index after the parenthesis closing the one at `start`."""
  depth = 0
  for i in range(start, len(text)):
    depth += {"(": 1, ")": -1}.get(text[i], 0)
    if depth == 0:
      return i + 1
  return len(text)


def _instructions(hlo_text: str):
  """(computation, name, result shape, opcode, operand names, attributes) of every instruction."""
  computation = None
  for line in hlo_text.splitlines():
    header = re.match(r"^(?:ENTRY\s+)?%(\S+)\s.*\{\s*$", line)
    if header:
      computation = header.group(1)
      continue
    match = re.match(r"^\s*(?:ROOT\s+)?%(\S+)\s*=\s*", line)
    if not match or computation is None:
      continue
    rest = line[match.end() :]
    end = _balanced(rest, 0) if rest.startswith("(") else rest.index(" ")
    shape, rest = rest[:end], rest[end:].lstrip()
    opcode = rest[: rest.index("(")]
    close = _balanced(rest, len(opcode))
    operands = re.findall(r"%([\w.\-]+)", rest[len(opcode) : close])
    yield computation, match.group(1), shape, opcode, operands, rest[close:]


def bytes_by_source(hlo_text: str) -> collections.Counter:
  """Bytes read and written by the program's top-level instructions (those of its entry computation, loop
  bodies and branches; a fusion counts its operands and result), summed by what the JAX program says they
  come from (`op_name` metadata, the model's module path shortened). Only arrays in HBM count, not those a
  layout places in a core's own memory; tiles' padding does not, so where dimensions are small the sum is below
  XLA's `bytes accessed`. An estimate for finding where the bytes go, not XLA's own count."""
  rows = list(_instructions(hlo_text))
  nested = set()
  for *_, attributes in rows:
    nested.update(re.findall(r"(?:calls|to_apply)=%([\w.\-]+)", attributes))
  sizes = {(computation, name): array_bytes(shape, hbm_only=True) for computation, name, shape, *_ in rows}
  totals = collections.Counter()
  for computation, name, shape, opcode, operands, attributes in rows:
    if computation in nested or opcode in _NOT_TRAFFIC or opcode.endswith("-done"):
      continue
    written = array_bytes(shape, hbm_only=True)
    if opcode in _READS_WHAT_IT_WRITES:  # reads as much as it writes (an async slice: its smallest array)
      piece = min([a for a in arrays_in(shape) if a[2]], default=(0, False, 0))
      traffic = piece[0] * (any(sizes.get((computation, o)) for o in operands) + piece[1])
    elif opcode == "dynamic-update-slice":  # in place: the update is read and written
      traffic = 2 * sizes.get((computation, operands[1]), 0)
    else:
      traffic = written + sum(sizes.get((computation, operand), 0) for operand in operands)
    source = re.search(r'op_name="([^"]*)"', attributes)
    totals[_short_source(source.group(1) if source else opcode)] += traffic
  return totals


def _short_source(op_name: str) -> str:
  """`jit(step_fn)/transpose(jvp(DecoderLM))/.../layers_3/mlp/dense_4h_to_h/dot_general` → `backward mlp/
  dense_4h_to_h/dot_general`: the pass, and the module and primitive without the layer's index."""
  direction = "backward " if "transpose(" in op_name else ""
  parts = [p for p in op_name.split("/") if not p.startswith(("jit(", "jvp(", "transpose(", "layers_", "while"))]
  parts = [p for p in parts if p not in ("body", "closed_call", "DecoderLM.from_embeddings", "DecoderLM.blocks")]
  return direction + "/".join(parts[-3:])
