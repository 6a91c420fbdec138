"""The mesh and the logical-axis rules a run traces its programs under."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from iml_jax import sharding


@pytest.mark.parametrize(
  "preset, shape, expected",
  [
    ("dp", (-1, 1, 1), PartitionSpec(("data", "fsdp"), None, None)),
    ("fsdp", (1, -1, 1), PartitionSpec(("data", "fsdp"), None, None)),
    ("fsdp_tensor", (1, 4, 2), PartitionSpec(("data", "fsdp"), None, "tensor")),
  ],
)
def test_activation_constraints_split_the_batch_under_the_runs_rules(preset, shape, expected):
  """The models constrain their activations by logical names (batch, length, embed / mlp); under `use_mesh` the
  names map through the run's rules, so an activation keeps its batch split over the data-parallel devices.
  Without the rules Flax constrains it whole onto every device (PartitionSpec()), and XLA gathers the batch."""
  mesh = sharding.make_mesh(shape)
  width = "mlp" if preset == "fsdp_tensor" else "embed"

  def constrained(x):
    return nn.with_logical_constraint(x, ("batch", "length", width))

  x = jax.ShapeDtypeStruct((16, 4, 8), jnp.float32)
  with sharding.use_mesh(mesh, sharding.rules_for(preset)):
    compiled = jax.jit(constrained).lower(x).compile()
  assert compiled.output_shardings.is_equivalent_to(NamedSharding(mesh, expected), 3), compiled.output_shardings
