"""Device mesh from the config and logical-axis rule presets (MaxText/t5x style).

Models name their axes (batch, length, embed, heads, mlp, vocab); a preset maps each name to mesh
axes (data, fsdp, tensor). Arrays are laid out with `NamedSharding`s derived from those names.
"""

import contextlib
import math

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from iml_jax.errors import IMLError

MESH_AXES = ("data", "fsdp", "tensor")
RULE_PRESETS = {
  "dp": (("batch", ("data", "fsdp")),),
  "fsdp": (("batch", ("data", "fsdp")), ("embed", "fsdp")),
  "fsdp_tensor": (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
  ),
}


def rules_for(preset: str):
  if preset not in RULE_PRESETS:
    raise IMLError(f"config field mesh.rules = {preset!r}: expected one of {sorted(RULE_PRESETS)}")
  return RULE_PRESETS[preset]


def mesh_shape(shape, num_devices: int) -> tuple[int, ...]:
  """Fill one -1 in `shape` so the product is the device count."""
  shape = [int(s) for s in shape]
  if len(shape) != len(MESH_AXES) or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise IMLError(
      f"config field mesh.shape = {tuple(shape)}: expected {len(MESH_AXES)} positive sizes "
      f"for {MESH_AXES}, at most one of them -1"
    )
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise IMLError(f"config field mesh.shape = {tuple(shape)}: {num_devices} devices are not divisible by {known}")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise IMLError(
      f"config field mesh.shape = {tuple(shape)} needs {math.prod(shape)} devices; {num_devices} are available"
    )
  return tuple(shape)


def make_mesh(shape, devices=None) -> Mesh:
  """The config's mesh over `devices` (default: all of this run's), laid out by JAX for their topology."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh(
    mesh_shape(shape, len(devices)),
    MESH_AXES,
    axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
    devices=devices,
  )


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules):
  """`mesh` and the logical-axis `rules` in context while programs are traced: Splash attention runs per device
  (`layers.splash_attention`), and the models' activation constraints (`nn.with_logical_constraint`) map their
  logical names through `rules`. Without the rules Flax maps every name to no mesh axis, which constrains each
  activation to be whole on every device: XLA then gathers the batch where it should gather the weights."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def data_parallel_size(mesh: Mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def uses_tensor_axis(rules) -> bool:
  """Whether `rules` map some logical axis onto the mesh's "tensor" axis (else it only repeats the work)."""
  return any("tensor" in ((axis,) if isinstance(axis, str) else axis or ()) for _, axis in rules)


def logical_shardings(boxed_tree, mesh: Mesh, rules):
  """NamedShardings for a tree of `nn.LogicallyPartitioned` leaves (or their abstract shapes)."""
  return nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed_tree), mesh, rules)


def check_divisible(boxed_tree, shapes, param_shardings) -> None:
  """A clear error, naming the parameter, when a mesh axis does not divide the dimension it splits.

  `shapes` are the unboxed leaves of `boxed_tree`, whose logical names say which axis each dimension is."""
  logical = nn.get_partition_spec(boxed_tree)

  def check(path, leaf, names: PartitionSpec, named: NamedSharding):
    for dim, (size, name, axes) in enumerate(
      zip(leaf.shape, tuple(names) + (None,) * leaf.ndim, tuple(named.spec) + (None,) * leaf.ndim)
    ):
      axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
      parts = math.prod(named.mesh.shape[a] for a in axes)
      if size % parts:
        hint = (
          "raise model.vocab_multiple"
          if name == "vocab"
          else "choose mesh.shape / mesh.rules, or model sizes, that divide"
        )
        raise IMLError(
          f"parameter {jax.tree_util.keystr(path)} of shape {tuple(leaf.shape)}: its {name} dimension "
          f"({size}) is split over mesh axes {axes} = {parts} devices, which does not divide it; {hint}"
        )

  jax.tree_util.tree_map_with_path(
    check, shapes, logical, param_shardings, is_leaf=lambda x: isinstance(x, PartitionSpec)
  )


def batch_sharding(mesh: Mesh, rules, ndim: int) -> NamedSharding:
  spec = nn.logical_to_mesh_axes(("batch",) + (None,) * (ndim - 1), rules)
  return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def put_global_batch(rows: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Every process holds the whole (small, synthetic) batch; each contributes its own slice."""
  per_process = rows.shape[0] // jax.process_count()
  local = rows[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
  return jax.make_array_from_process_local_data(sharding, local, rows.shape)
