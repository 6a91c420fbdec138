"""Optimizers, train state, and the jitted (sharded, donated) train step.

The Adafactor preset reproduces the study's HF Adafactor (docs/study.md §7.2): factored second moments for
every matrix, beta2(t) = 1 - t^-0.8, eps 1e-30, update RMS clipping 1.0, no momentum, no parameter
scaling, after a global grad-norm clip of 1.0, lr linearly decayed to 0 within the stage.
"""

import functools
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from iml_jax import sharding
from iml_jax.errors import IMLError
from iml_jax.models.registry import init_params, unbox, weighted_loss

OPTIMIZERS = ("adafactor", "adamw", "sgd")
TRAINABLE = ("all", "embeddings", "alias_embeddings")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def learning_rate_schedule(opt_cfg, total_steps: int) -> optax.Schedule:
  """Linear warm-up over `warmup_frac` of the stage, then linear decay to 0 at its last step."""
  warmup = int(round(opt_cfg.warmup_frac * total_steps))
  decay = optax.linear_schedule(opt_cfg.lr, 0.0, max(total_steps - warmup, 1))
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, opt_cfg.lr, warmup), decay], [warmup])


def _scale_by_mask(mask) -> optax.GradientTransformation:
  """Multiplies updates by `mask` (a tree of scalars or broadcastable arrays): freezes what is 0."""

  def update(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, m: u * m.astype(u.dtype), updates, mask), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _per_layer_where_stacked(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """`inner` with each layer of a scanned model's stacked parameters (the `layers` subtree, layer axis first)
  treated as its own parameter, exactly as in the unrolled model: Adafactor factors each layer's matrix and
  RMS-clips each layer's update, instead of factoring and clipping over the stacked array."""

  def stacked(tree) -> bool:
    return isinstance(tree, dict) and "layers" in tree

  def split(tree):
    return tree["layers"], {k: v for k, v in tree.items() if k != "layers"}

  def init(params):
    if not stacked(params):
      return inner.init(params)
    layers, rest = split(params)
    return jax.vmap(inner.init)(layers), inner.init(rest)

  def update(updates, state, params=None):
    if not stacked(updates):
      return inner.update(updates, state, params)
    (layer_updates, rest_updates), (layer_params, rest_params) = (
      split(updates),
      (split(params) if params is not None else (None, None)),
    )
    layer_state, rest_state = state
    layer_updates, layer_state = jax.vmap(inner.update)(layer_updates, layer_state, layer_params)
    rest_updates, rest_state = inner.update(rest_updates, rest_state, rest_params)
    return {**rest_updates, "layers": layer_updates}, (layer_state, rest_state)

  return optax.GradientTransformation(init, update)


def make_optimizer(opt_cfg, total_steps: int, trainable_mask=None) -> optax.GradientTransformation:
  schedule = learning_rate_schedule(opt_cfg, total_steps)
  if opt_cfg.name == "adafactor":
    core = optax.adafactor(
      schedule,
      min_dim_size_to_factor=1,
      decay_rate=0.8,
      decay_offset=0,
      multiply_by_parameter_scale=False,
      clipping_threshold=1.0,
      momentum=None,
      eps=1e-30,
      factored=True,
    )
  elif opt_cfg.name == "adamw":
    core = optax.adamw(schedule, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay)
  elif opt_cfg.name == "sgd":
    core = optax.sgd(schedule)
  else:
    raise IMLError(f"config field optimizer.name = {opt_cfg.name!r}: expected one of {OPTIMIZERS}")
  parts = [optax.clip_by_global_norm(opt_cfg.grad_clip)] if opt_cfg.grad_clip else []
  parts.append(_per_layer_where_stacked(core))
  if trainable_mask is not None:
    # Masked before clipping (frozen gradients do not count in the norm) and after the optimizer.
    parts = [_scale_by_mask(trainable_mask)] + parts + [_scale_by_mask(trainable_mask)]
  return optax.chain(*parts)


def trainable_mask(params, mode: str, alias_token_ids: np.ndarray | None = None):
  """None (train everything) or a tree of multipliers: 0 freezes, 1 trains, a row mask trains rows."""
  if mode == "all":
    return None
  if mode not in TRAINABLE:
    raise IMLError(f"config field stages.<stage>.trainable = {mode!r}: expected one of {TRAINABLE}")
  mask = jax.tree.map(lambda p: jnp.zeros((), p.dtype), params)
  table = params["embed_in"]["embedding"]
  if mode == "embeddings":
    rows = jnp.ones((), table.dtype)
  else:
    if alias_token_ids is None or not len(alias_token_ids):
      raise IMLError("trainable = 'alias_embeddings' needs one token per alias (data.separate_token_per_var)")
    rows = jnp.zeros((table.shape[0], 1), table.dtype).at[jnp.asarray(alias_token_ids), 0].set(1)
  mask["embed_in"]["embedding"] = rows
  return mask


def _loss_sums(model, params, batch):
  """(sum of weighted token losses, sum of weights): the mean is their ratio over any batch split."""
  weights = batch["loss_mask"] * batch["weights"][:, None]
  return weighted_loss(model, params, batch, weights), jnp.sum(weights)


def _sums_and_grads(model, params, micro_batch):
  (loss_sum, weight_sum), grads = jax.value_and_grad(lambda p: _loss_sums(model, p, micro_batch), has_aux=True)(params)
  return loss_sum, weight_sum, grads


def accumulate(model, params, sums, micro_batch):
  """One pass of the gradient-accumulation loop: the micro-batch's loss sums and gradients added to `sums`."""
  return jax.tree.map(jnp.add, sums, _sums_and_grads(model, params, micro_batch))


def apply_sums(optimizer: optax.GradientTransformation, state: TrainState, sums) -> tuple[TrainState, jax.Array]:
  """The step's update from the batch's (loss sum, weight sum, gradient sums): (next state, mean loss)."""
  loss_sum, weight_sum, grads = sums
  denominator = jnp.maximum(weight_sum, 1e-9)
  grads = jax.tree.map(lambda g: g / denominator, grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(state.step + 1, params, opt_state), loss_sum / denominator


def make_train_step(
  model: nn.Module,
  optimizer: optax.GradientTransformation,
  grad_accum: int,
  state_shardings: TrainState,
  batch_shardings: dict,
) -> Callable:
  """Jitted `(state, batch) -> (state, loss)` with its shardings; the input state is donated.

  With `grad_accum` > 1 the batch is split into micro-batches whose gradient sums are accumulated
  in a scan, so the step equals one step on the whole batch (token-weighted mean loss).
  """

  def step_fn(state: TrainState, batch):
    def micro_step(carry, micro_batch):
      return accumulate(model, state.params, carry, micro_batch), None

    if grad_accum == 1:  # no loop: XLA's CPU convolutions are far slower inside one
      loss_sum, weight_sum, grads = _sums_and_grads(model, state.params, batch)
    else:
      micro_batches = jax.tree.map(lambda x: x.reshape((grad_accum, -1) + x.shape[1:]), batch)
      zeros = (jnp.zeros(()), jnp.zeros(()), jax.tree.map(jnp.zeros_like, state.params))
      (loss_sum, weight_sum, grads), _ = jax.lax.scan(micro_step, zeros, micro_batches)
    return apply_sums(optimizer, state, (loss_sum, weight_sum, grads))

  return jax.jit(
    step_fn, in_shardings=(state_shardings, batch_shardings), out_shardings=(state_shardings, None), donate_argnums=0
  )


def abstract_state(model: nn.Module, optimizer: optax.GradientTransformation, mesh, rules) -> TrainState:
  """Shapes, dtypes and shardings of the whole train state, without allocating it.

  Parameter shardings come from the model's logical axis names; each optimizer-state leaf follows the
  parameter it belongs to (`optimizer_state_sharding`), scalars replicated.
  """
  params = abstract_params(model, mesh, rules)
  by_path = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
  opt_state = jax.tree_util.tree_map_with_path(
    lambda path, a: jax.ShapeDtypeStruct(
      a.shape, a.dtype, sharding=optimizer_state_sharding(jax.tree_util.keystr(path), a.shape, by_path, mesh)
    ),
    jax.eval_shape(optimizer.init, params),
  )
  step = jax.ShapeDtypeStruct((), jnp.int32, sharding=sharding.replicated(mesh))
  return TrainState(step, params, opt_state)


def abstract_params(model: nn.Module, mesh, rules):
  """Shapes, dtypes and shardings of the model's parameters (from their logical axis names), not allocated."""
  boxed = jax.eval_shape(functools.partial(init_params, model), jax.random.key(0))
  param_shardings = sharding.logical_shardings(boxed, mesh, rules)
  shapes = unbox(boxed)
  sharding.check_divisible(boxed, shapes, param_shardings)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, param_shardings)


def optimizer_state_sharding(path: str, shape: tuple[int, ...], params_by_path: dict, mesh):
  """The sharding of an optimizer-state leaf at `path`: that of the parameter whose path ends it when
  the shapes agree (Adam moments), with one dimension dropped when the leaf lacks it (Adafactor's
  factored row/column statistics); replicated otherwise (scalars, counters, placeholders)."""
  owners = [p for p in params_by_path if path.endswith(p)]
  if not owners or not shape:
    return sharding.replicated(mesh)
  param = params_by_path[max(owners, key=len)]
  spec = tuple(param.sharding.spec) + (None,) * (param.ndim - len(param.sharding.spec))
  if tuple(shape) == param.shape:
    return NamedSharding(mesh, PartitionSpec(*spec))
  for dim in range(param.ndim):
    if param.shape[:dim] + param.shape[dim + 1 :] == tuple(shape):
      return NamedSharding(mesh, PartitionSpec(*spec[:dim], *spec[dim + 1 :]))
  return sharding.replicated(mesh)


def shardings_of(abstract: Any) -> Any:
  return jax.tree.map(lambda a: a.sharding, abstract)


def stage_step(model, optimizer_spec, total_steps: int, mask, grad_accum: int, mesh, rules, batch_layout):
  """(optimizer, abstract state, jitted train step) of one stage: what a run executes (stage.ProgramCache) and
  what tpu_plan compiles for a TPU (compile_plan), built in one place so the two cannot drift apart."""
  optimizer = make_optimizer(optimizer_spec, total_steps, mask)
  abstract = abstract_state(model, optimizer, mesh, rules)
  return optimizer, abstract, make_train_step(model, optimizer, grad_accum, shardings_of(abstract), batch_layout)


def create_state(model, optimizer, abstract: TrainState, rng: jax.Array, params=None, initializer=None) -> TrainState:
  """A fresh state laid out as `abstract`: new parameters from `rng` (by `initializer`, the model's
  `make_initializer` program if one was compiled already), or the given `params` (the previous stage's), with a
  fresh optimizer and step 0."""
  state_shardings = shardings_of(abstract)
  if params is None:
    params = (initializer or make_initializer(model, state_shardings))(rng)
  else:
    params = jax.device_put(params, state_shardings.params)
  opt_state = jax.jit(optimizer.init, out_shardings=state_shardings.opt_state)(params)
  step = jax.device_put(jnp.zeros((), jnp.int32), state_shardings.step)
  return TrainState(step, params, opt_state)


def make_initializer(model: nn.Module, shardings: TrainState) -> Callable:
  """Jitted `rng -> parameters` of `model`, laid out as the state `shardings` say."""
  return jax.jit(lambda rng: unbox(init_params(model, rng)), out_shardings=shardings.params)
