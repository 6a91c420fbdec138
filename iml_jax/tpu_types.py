"""Cloud TPU slice types by the accelerator names `launch/create.sh` takes (v4-8, v5litepod-8, v5p-8, v6e-8, …):
the topology libtpu compiles for and each chip's published memory, peak bf16 compute and memory bandwidth.

`topology_devices` gives a slice's devices with no TPU attached (libtpu from PyPI, the `tpu` extra), so that a
program lowered on a mesh of them compiles with the real TPU compiler on any machine.
"""

import dataclasses
import os
import re

from iml_jax.errors import IMLError

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One generation's chip as Google publishes it (`source`). A JAX device is a chip, or one of the two
  TensorCores of a v2/v3 chip: `devices` per chip, and the figures per device are the chip's divided by it."""

  generation: str  # the topology prefix libtpu knows
  hbm_bytes: int
  peak_bf16_flops: float  # per second
  hbm_bytes_per_s: float
  source: str
  devices: int = 1


CHIPS = {
  "v2": Chip("v2", 16 * GiB, 45e12, 700e9, "https://cloud.google.com/tpu/docs/v2", devices=2),
  "v3": Chip("v3", 32 * GiB, 123e12, 900e9, "https://cloud.google.com/tpu/docs/v3", devices=2),
  "v4": Chip("v4", 32 * GiB, 275e12, 1200e9, "https://cloud.google.com/tpu/docs/v4"),
  "v5litepod": Chip("v5e", 16 * GiB, 197e12, 819e9, "https://cloud.google.com/tpu/docs/v5e"),
  "v5p": Chip("v5p", 95 * GiB, 459e12, 2765e9, "https://cloud.google.com/tpu/docs/v5p"),
  "v6e": Chip("v6e", 32 * GiB, 918e12, 1640e9, "https://cloud.google.com/tpu/docs/v6e"),
}
# Where the number in an accelerator name counts TensorCores (two per chip) rather than chips.
_CORES_IN_NAME = ("v2", "v3", "v4", "v5p")
# Chip grids libtpu names slices by, by chip count: 2D tori (v2, v3, v5e, v6e) and 3D (v4, v5p).
_GRIDS_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
_GRIDS_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4"}
DEFAULT_TYPES = ("v4-8", "v5litepod-8", "v5p-8", "v6e-8")


@dataclasses.dataclass(frozen=True)
class TpuType:
  name: str  # as gcloud and launch/create.sh name it
  chip: Chip
  chips: int
  topology: str  # as jax.experimental.topologies names it

  @property
  def chips_per_host(self) -> tuple[int, int, int]:
    """The chips one TPU VM holds: 8 on the v5e and v6e 8-chip VMs (single-host slices), else 4 (fewer alone)."""
    if self.chips < 4:
      return (self.chips, 1, 1)
    return (2, 4, 1) if self.chips == 8 and self.chip.generation in ("v5e", "v6e") else (2, 2, 1)

  @property
  def devices(self) -> int:
    return self.chips * self.chip.devices

  @property
  def device_hbm_bytes(self) -> int:
    return self.chip.hbm_bytes // self.chip.devices

  @property
  def device_peak_flops(self) -> float:
    return self.chip.peak_bf16_flops / self.chip.devices

  @property
  def device_hbm_bytes_per_s(self) -> float:
    return self.chip.hbm_bytes_per_s / self.chip.devices


def _grids(chip: Chip) -> dict[int, str]:
  """The slices by chip count: v2 and v3 as single-host v2-8 and v3-8 only."""
  if chip.devices == 2:
    return {4: "2x2"}
  return _GRIDS_3D if chip.generation in ("v4", "v5p") else _GRIDS_2D


def known_types() -> list[str]:
  names = []
  for prefix in CHIPS:
    grids = _grids(CHIPS[prefix])
    per_name = 2 if prefix in _CORES_IN_NAME else 1
    names += [f"{prefix}-{chips * per_name}" for chips in grids]
  return names


def tpu_type(name: str) -> TpuType:
  """The slice an accelerator name (e.g. `v5litepod-8`) stands for; an unknown name is one clear error."""
  match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", name.strip())
  prefix, count = (match.group(1), int(match.group(2))) if match else (None, 0)
  chip = CHIPS.get(prefix)
  chips = count // 2 if prefix in _CORES_IN_NAME else count
  grids = _grids(chip) if chip else {}
  if chip is None or chips not in grids or (prefix in _CORES_IN_NAME and count % 2):
    raise IMLError(f"--tpu={name}: unknown TPU type; expected one of {', '.join(known_types())}")
  return TpuType(name.strip(), chip, chips, f"{chip.generation}:{grids[chips]}")


def topology_devices(kind: TpuType) -> list:
  """The devices of a `kind` slice, from libtpu's description of its topology (no TPU needed)."""
  try:
    import libtpu  # noqa: F401  (only to say which install is missing)
  except ImportError:
    raise IMLError(
      'compiling for TPUs needs libtpu: pip install -e ".[tpu]" (or pip install "jax[tpu]"), then run again'
    ) from None
  # No device is opened: libtpu need not ask a cloud metadata server which TPU this machine has, nor lock the
  # TPU for this process (plans run side by side, and beside a job on an attached TPU).
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies

  devices = list(
    topologies.get_topology_desc(
      topology_name=kind.topology,
      platform="tpu",
      # v4 and v5p present a chip's two TensorCores as one device (megacore), as on their VMs
      chip_config_name="megacore" if kind.chip.generation in ("v4", "v5p") else "default",
      chips_per_host_bounds=kind.chips_per_host,
    ).devices
  )
  if len(devices) != kind.devices:
    raise IMLError(f"{kind.name}: libtpu's topology {kind.topology} has {len(devices)} devices, not {kind.devices}")
  return devices
