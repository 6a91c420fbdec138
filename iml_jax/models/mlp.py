"""The 1-D toy's regressor (docs/study.md §6.2): a ReLU MLP from point features to output values, MSE loss.

Parameters carry logical axis names, so the sharding presets apply as to the other models.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from iml_jax.errors import IMLError
from iml_jax.models.layers import check_compute_dtype, default_or_normal_init


@dataclasses.dataclass(frozen=True)
class MLPConfig:
  in_features: int
  out_features: int
  hidden: int = 256
  n_layers: int = 3  # hidden layers
  init_std: float = 0.0  # 0: Flax's default (LeCun normal) initialisation
  dtype: str = "float32"

  def __post_init__(self):
    if self.hidden < 1 or self.n_layers < 1:
      raise IMLError(
        f"config fields model.hidden = {self.hidden}, model.n_layers = {self.n_layers}: expected positive sizes"
      )
    check_compute_dtype(self.dtype)


class MLP(nn.Module):
  cfg: MLPConfig

  @nn.compact
  def __call__(self, inputs_BxF):
    cfg = self.cfg
    kernel_init = default_or_normal_init(cfg.init_std)
    dtype = jnp.dtype(cfg.dtype)
    x = inputs_BxF.astype(dtype)
    for i in range(cfg.n_layers + 1):
      last = i == cfg.n_layers
      axes = ("mlp", None) if last else ((None, "mlp") if i == 0 else ("embed", "mlp"))
      x = nn.Dense(
        cfg.out_features if last else cfg.hidden,
        dtype=dtype,
        kernel_init=nn.with_logical_partitioning(kernel_init, axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)),
      )(x)
      if not last:
        x = nn.relu(x)
    return x.astype(jnp.float32)


def init_params(model: MLP, rng: jax.Array):
  return model.init(rng, jnp.zeros((1, model.cfg.in_features)))["params"]


def token_losses(model: MLP, params, batch: dict) -> jax.Array:
  """Squared error of every output [B, outputs] (the training loss weighs them with `loss_mask`)."""
  return (model.apply({"params": params}, batch["inputs"]) - batch["targets"]) ** 2


def predict(model: MLP, params, inputs_BxF) -> jax.Array:
  """The predicted outputs [B, outputs]."""
  return model.apply({"params": params}, inputs_BxF)
