"""A small ConvNet for the vision IML experiment: digit-grid image -> A / B / — for each of the 9 cells.

The study's architecture is unknown (docs/study.md §6.1); this one is ours: three 3×3 convolutions (the last
two with stride 2), a hidden dense layer, and a 9 × 3 output. Parameters carry logical axis names, so the
sharding presets apply as to the language models.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from iml_jax.errors import IMLError
from iml_jax.models.layers import check_compute_dtype, default_or_normal_init


@dataclasses.dataclass(frozen=True)
class ConvNetConfig:
  image_height: int
  image_width: int
  features: tuple[int, ...] = (32, 64, 64)
  hidden: int = 256
  cells: int = 9
  classes: int = 3
  init_std: float = 0.0  # 0: Flax's default (LeCun normal) initialisation
  dtype: str = "float32"

  def __post_init__(self):
    object.__setattr__(self, "features", tuple(self.features))
    if not self.features or min(self.features) < 1 or self.hidden < 1:
      raise IMLError(
        f"config fields model.features = {self.features}, model.hidden = {self.hidden}: expected positive sizes"
      )
    check_compute_dtype(self.dtype)


class ConvNet(nn.Module):
  cfg: ConvNetConfig

  @nn.compact
  def __call__(self, images_BxHxWx1):
    cfg = self.cfg
    kernel_init = default_or_normal_init(cfg.init_std)
    x = images_BxHxWx1.astype(jnp.dtype(cfg.dtype))
    for i, features in enumerate(cfg.features):
      x = nn.relu(
        nn.Conv(
          features,
          (3, 3),
          strides=1 if i == 0 else 2,
          dtype=jnp.dtype(cfg.dtype),
          kernel_init=nn.with_logical_partitioning(kernel_init, (None, None, None, "mlp")),
          bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
        )(x)
      )
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(
      nn.Dense(
        cfg.hidden,
        dtype=jnp.dtype(cfg.dtype),
        kernel_init=nn.with_logical_partitioning(kernel_init, ("mlp", "embed")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
      )(x)
    )
    logits = nn.Dense(
      cfg.cells * cfg.classes,
      dtype=jnp.dtype(cfg.dtype),
      kernel_init=nn.with_logical_partitioning(kernel_init, ("embed", None)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
    )(x)
    return logits.astype(jnp.float32).reshape(x.shape[0], cfg.cells, cfg.classes)


def init_params(model: ConvNet, rng: jax.Array):
  return model.init(rng, jnp.zeros((1, model.cfg.image_height, model.cfg.image_width, 1)))["params"]


def token_losses(model: ConvNet, params, batch: dict) -> jax.Array:
  """Cross-entropy of every cell [B, 9] (the training loss weighs them with `loss_mask`)."""
  logits = model.apply({"params": params}, batch["inputs"])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])


def predict(model: ConvNet, params, images_BxHxWx1) -> jax.Array:
  """The predicted class of every cell [B, 9]."""
  return jnp.argmax(model.apply({"params": params}, images_BxHxWx1), axis=-1)
