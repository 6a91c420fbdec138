import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from iml_jax import config_blocks as blocks
from iml_jax import sharding, train
from iml_jax.models import registry
from iml_jax.models.decoder import DecoderConfig, DecoderLM


def _hf_adafactor_reference(params, grads_per_step, lr, total_steps):
  """NumPy transcription of HF Adafactor(scale_parameter=False, relative_step=False) after a global
  grad-norm clip of 1.0 and a linear decay of lr to 0 (docs/study.md §7.2)."""
  params = {k: v.astype(np.float64).copy() for k, v in params.items()}
  state = {}
  for t, grads in enumerate(grads_per_step, start=1):
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    scale = min(1.0, 1.0 / norm)
    lr_t = lr * (1 - (t - 1) / total_steps)
    beta2t = 1.0 - t**-0.8
    for name, g in grads.items():
      g = g.astype(np.float64) * scale
      update = g**2 + 1e-30
      if g.ndim >= 2:
        row, col = state.get(name, (np.zeros(g.shape[0]), np.zeros(g.shape[1])))
        row = beta2t * row + (1 - beta2t) * update.mean(-1)
        col = beta2t * col + (1 - beta2t) * update.mean(-2)
        state[name] = (row, col)
        update = np.outer((row / row.mean()) ** -0.5, col**-0.5) * g
      else:
        v = beta2t * state.get(name, np.zeros_like(g)) + (1 - beta2t) * update
        state[name] = v
        update = v**-0.5 * g
      update /= max(1.0, np.sqrt((update**2).mean()) / 1.0)
      params[name] -= lr_t * update
  return params


def test_adafactor_matches_hf_semantics():
  rng = np.random.default_rng(0)
  params = {"matrix": rng.normal(size=(5, 3)).astype(np.float32), "vector": rng.normal(size=(4,)).astype(np.float32)}
  grads = [
    {k: rng.normal(size=v.shape).astype(np.float32) * (3.0 if t == 0 else 0.1) for k, v in params.items()}
    for t in range(6)
  ]
  optimizer = train.make_optimizer(blocks.optimizer(name="adafactor", lr=0.01), total_steps=6)
  state = optimizer.init(params)
  current = {k: jnp.asarray(v) for k, v in params.items()}
  for g in grads:
    updates, state = optimizer.update({k: jnp.asarray(v) for k, v in g.items()}, state, current)
    current = optax.apply_updates(current, updates)
  expected = _hf_adafactor_reference(params, grads, 0.01, 6)
  for name in params:
    np.testing.assert_allclose(current[name], expected[name], rtol=1e-5, atol=1e-7)


def test_schedule_starts_at_full_lr_and_reaches_zero():
  schedule = train.learning_rate_schedule(blocks.optimizer(lr=1.0), total_steps=10)
  assert float(schedule(0)) == 1.0 and float(schedule(5)) == pytest.approx(0.5) and float(schedule(10)) == 0.0
  warm = train.learning_rate_schedule(blocks.optimizer(lr=1.0, warmup_frac=0.2), total_steps=10)
  assert float(warm(0)) == 0.0 and float(warm(2)) == pytest.approx(1.0) and float(warm(10)) == 0.0


VOCAB = 31  # the tensor axis does not divide it: the model pads it to 32


def _setup(mesh, opt=None, grad_accum=1, trainable="all", alias_ids=None, rules="dp", total=50, scan_layers=False):
  model = DecoderLM(
    DecoderConfig(
      vocab_size=VOCAB + 1,
      valid_vocab=VOCAB,
      d_model=32,
      n_layers=2,
      n_heads=4,
      d_mlp=64,
      max_len=8,
      init_std=0.1,
      embedding_init_std=0.1,
      scan_layers=scan_layers,
    )
  )
  abstract_params = train.unbox(jax.eval_shape(lambda: train.init_params(model, jax.random.key(0))))
  mask = train.trainable_mask(abstract_params, trainable, alias_ids)
  optimizer = train.make_optimizer(opt or blocks.optimizer(name="adamw", lr=3e-3), total, mask)
  rule_set = sharding.rules_for(rules)
  abstract = train.abstract_state(model, optimizer, mesh, rule_set)
  state = train.create_state(model, optimizer, abstract, jax.random.key(0))
  layout = {
    name: sharding.batch_sharding(mesh, rule_set, 1 if name == "weights" else 2)
    for name in ("tokens", "loss_mask", "weights")
  }
  step = train.make_train_step(model, optimizer, grad_accum, train.shardings_of(abstract), layout)
  return model, state, step, layout


def _batch(seed=0, n=16):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, VOCAB, size=(n, 8)).astype(np.int32)
  mask = (rng.random((n, 7)) < 0.8).astype(np.float32)
  weights = np.ones(n, np.float32)
  weights[-3:] = 0.0  # a partly filled last batch
  return {"tokens": tokens, "loss_mask": mask, "weights": weights}


def _run(mesh, steps=5, **kwargs):
  # SGD: Adam-style normalisation would blow float noise in ~0 gradients (e.g. key biases) up to lr.
  kwargs.setdefault("opt", blocks.optimizer(name="sgd", lr=0.5))
  _, state, step, layout = _setup(mesh, **kwargs)
  losses = []
  for i in range(steps):
    batch = {k: sharding.put_global_batch(v, layout[k]) for k, v in _batch(i).items()}
    state, loss = step(state, batch)
    losses.append(float(loss))
  return jax.device_get(state.params), losses


def _one_device_mesh():
  return Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), sharding.MESH_AXES)


def test_gradient_accumulation_equals_one_big_batch():
  mesh = _one_device_mesh()
  params1, losses1 = _run(mesh, grad_accum=1)
  params4, losses4 = _run(mesh, grad_accum=4)
  np.testing.assert_allclose(losses1, losses4, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params1, params4)


# CI runs one fsdp_tensor mesh (with scanned layers); the other is slow: run with `-m slow`
@pytest.mark.parametrize(
  "rules, shape, scan_layers",
  [
    ("dp", (8, 1, 1), False),
    ("fsdp", (2, 4, 1), False),
    pytest.param("fsdp_tensor", (2, 2, 2), False, marks=pytest.mark.slow),
    ("fsdp_tensor", (1, 4, 2), True),
  ],
)
def test_sharded_training_equals_one_device(rules, shape, scan_layers):
  assert len(jax.devices()) == 8
  mesh = sharding.make_mesh(shape)
  sharded, losses = _run(mesh, rules=rules, scan_layers=scan_layers)
  single, single_losses = _run(_one_device_mesh(), rules=rules, scan_layers=scan_layers)
  np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), sharded, single)


@pytest.mark.parametrize(
  "rules, shape, embedding_shard, mlp_shard",
  [
    ("dp", (8, 1, 1), (32, 32), (32, 64)),  # replicated
    ("fsdp", (2, 4, 1), (32, 8), (8, 64)),  # embed split 4 ways
    ("fsdp_tensor", (2, 2, 2), (16, 16), (16, 32)),  # embed 2 ways, vocab and mlp 2 ways
  ],
)
def test_parameters_and_optimizer_state_are_split_as_the_rules_say(rules, shape, embedding_shard, mlp_shard):
  _, state, _, _ = _setup(sharding.make_mesh(shape), rules=rules)
  embedding = state.params["embed_in"]["embedding"]  # [vocab 32, embed 32]
  kernel = state.params["layers_0"]["mlp"]["dense_h_to_4h"]["kernel"]  # [embed 32, mlp 64]
  assert {s.data.shape for s in embedding.addressable_shards} == {embedding_shard}
  assert {s.data.shape for s in kernel.addressable_shards} == {mlp_shard}
  adam_moments = [
    leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.opt_state)
    if "layers_0']['mlp']['dense_h_to_4h']['kernel']" in jax.tree_util.keystr(path)
  ]
  assert len(adam_moments) == 2  # mu and nu
  for moment in adam_moments:
    assert {s.data.shape for s in moment.addressable_shards} == {mlp_shard}


def test_adafactor_factored_statistics_follow_their_parameter():
  _, state, _, _ = _setup(sharding.make_mesh((2, 2, 2)), rules="fsdp_tensor", opt=blocks.optimizer())
  stats = {
    jax.tree_util.keystr(path).split(".")[-1]: leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.opt_state)
    if jax.tree_util.keystr(path).endswith("['layers_0']['mlp']['dense_h_to_4h']['kernel']")
  }
  # kernel [embed 32 over fsdp, mlp 64 over tensor]: row statistics [32] split like embed, columns [64] like mlp
  assert {s.data.shape for s in stats[next(k for k in stats if k.startswith("v_row"))].addressable_shards} == {(16,)}
  assert {s.data.shape for s in stats[next(k for k in stats if k.startswith("v_col"))].addressable_shards} == {(32,)}


def test_loss_decreases_and_tiny_set_is_memorised():
  mesh = _one_device_mesh()
  model, state, step, layout = _setup(mesh, opt=blocks.optimizer(name="adamw", lr=1e-2), total=150)
  batch = _batch(0, n=8)
  batch["tokens"][:, 0] = np.arange(1, 9)  # distinct first tokens: every continuation is learnable
  batch["loss_mask"][:] = 1.0
  batch["weights"][:] = 1.0
  device_batch = {k: sharding.put_global_batch(v, layout[k]) for k, v in batch.items()}
  losses = []
  for _ in range(150):
    state, loss = step(state, device_batch)
    losses.append(float(loss))
  assert losses[-1] < 0.05 < losses[0]
  logits = registry.token_losses(model, state.params, {"tokens": jnp.asarray(batch["tokens"])})
  assert float(logits.max()) < 0.5  # every next token of every sequence is predicted


def test_alias_rows_only_change_the_chosen_embedding_rows():
  mesh = _one_device_mesh()
  alias_ids = np.array([3, 7, 11])
  _, before, _, _ = _setup(mesh, trainable="alias_embeddings", alias_ids=alias_ids)
  before = jax.device_get(before.params)
  after, _ = _run(mesh, trainable="alias_embeddings", alias_ids=alias_ids, opt=blocks.optimizer(name="adamw", lr=1e-2))
  changed = np.abs(after["embed_in"]["embedding"] - before["embed_in"]["embedding"]).sum(-1) > 0
  assert set(np.flatnonzero(changed)) == set(alias_ids)
  flat_before, flat_after = jax.tree_util.tree_leaves_with_path(before), jax.tree.leaves(after)
  for (path, b), a in zip(flat_before, flat_after):
    if "embed_in" not in jax.tree_util.keystr(path):
      np.testing.assert_array_equal(a, b)


def test_seq2seq_training_learns_pairs_that_greedy_decoding_returns():
  """A tiny T5 trained on four input → target pairs (train step, loss layout) decodes them back."""
  from iml_jax.models import t5
  from iml_jax.models.decoding import greedy_decode_seq2seq

  mesh = _one_device_mesh()
  model = t5.T5(t5.T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, n_heads=4, n_layers=1, init_std=0.1))
  optimizer = train.make_optimizer(blocks.optimizer(name="adamw", lr=1e-2), 200)
  rules = sharding.rules_for("dp")
  abstract = train.abstract_state(model, optimizer, mesh, rules)
  state = train.create_state(model, optimizer, abstract, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {
    "inputs": rng.integers(2, VOCAB, (4, 5)).astype(np.int32),
    "input_mask": np.ones((4, 5), bool),
    "targets": np.concatenate([rng.integers(2, VOCAB, (4, 3)), np.ones((4, 1))], 1).astype(np.int32),
    "loss_mask": np.ones((4, 4), np.float32),
    "weights": np.ones(4, np.float32),
  }
  layout = {k: sharding.batch_sharding(mesh, rules, v.ndim) for k, v in batch.items()}
  step = train.make_train_step(model, optimizer, 1, train.shardings_of(abstract), layout)
  device_batch = {k: sharding.put_global_batch(v, layout[k]) for k, v in batch.items()}
  for _ in range(150):
    state, loss = step(state, device_batch)
  assert float(loss) < 0.05
  decoded = greedy_decode_seq2seq(
    model, state.params, jnp.asarray(batch["inputs"]), jnp.asarray(batch["input_mask"]), 4, eos_id=1
  )
  np.testing.assert_array_equal(np.asarray(decoded), batch["targets"])


@pytest.mark.parametrize(
  "opt",
  [blocks.optimizer(lr=1e-2), blocks.optimizer(name="adamw", lr=3e-3, weight_decay=0.1)],
  ids=["adafactor", "adamw"],
)
def test_scanned_layers_train_exactly_like_unrolled_ones(opt):
  """Stacked layer parameters are optimised per layer: Adafactor's factored statistics and update clipping
  never span layers, so a scanned model follows the unrolled one step by step."""
  mesh = _one_device_mesh()
  results = {}
  for scanned in (False, True):
    model, state, step, layout = _setup(mesh, opt=opt, scan_layers=scanned)
    if scanned:  # start from the unrolled model's initial parameters
      layout_of = jax.tree.map(lambda a: a.sharding, state.params)
      state = state.replace(params=jax.device_put(registry.to_layout(results[False][0], state.params), layout_of))
    initial = jax.device_get(state.params)
    for i in range(3):
      state, _ = step(state, {k: sharding.put_global_batch(v, layout[k]) for k, v in _batch(i).items()})
    results[scanned] = (initial, jax.device_get(state.params))
  unrolled = results[False][1]
  scanned = registry.to_layout(results[True][1], unrolled)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(scanned), jax.tree.leaves(unrolled)):
    if "['key']['bias']" in jax.tree_util.keystr(path):
      continue  # its true gradient is 0 (softmax ignores a per-query constant): both sides normalise float noise
    # Adafactor divides each gradient by the root of its second moment, so an element whose gradient is mostly
    # float noise moves by noise: 5.9e-5 at most (a query bias, AVX-512 CPU); statistics or update clipping
    # spanning the stacked layers move parameters by 2.7e-2 here.
    np.testing.assert_allclose(a, b, atol=5e-4, err_msg=jax.tree_util.keystr(path))


def test_a_padded_vocabulary_draws_and_trains_like_the_unpadded_one():
  """The tensor axis pads the vocabulary (here 31 -> 32 rows): the real rows are drawn as without padding, the
  padded ones are zeros and get no gradient, the loss is the same to the bit and the gradient on the real
  parameters up to float rounding (the whole pipeline on several meshes: test_experiment's mesh tests). Not to the
  bit: the backward product over 31 or 32 vocabulary columns sums in a different order on some CPUs (AVX-512)."""
  shape = dict(d_model=32, n_layers=2, n_heads=4, d_mlp=64, max_len=8, init_std=0.1, embedding_init_std=0.1)
  plain = DecoderLM(DecoderConfig(vocab_size=VOCAB, **shape))
  padded = DecoderLM(DecoderConfig(vocab_size=VOCAB + 1, valid_vocab=VOCAB, **shape))
  params = {
    name: registry.unbox(registry.init_params(model, jax.random.key(3)))
    for name, model in (("plain", plain), ("padded", padded))
  }

  def real_part(tree):  # the padded model's parameters without its padding
    tree = jax.tree.map(lambda x: x, tree)
    tree["embed_in"]["embedding"] = tree["embed_in"]["embedding"][:VOCAB]
    tree["embed_out"] = jax.tree.map(lambda x: x[..., :VOCAB], tree["embed_out"])
    return tree

  assert not np.asarray(params["padded"]["embed_in"]["embedding"][VOCAB:]).any()
  assert not np.asarray(params["padded"]["embed_out"]["kernel"][:, VOCAB:]).any()
  jax.tree.map(np.testing.assert_array_equal, real_part(params["padded"]), params["plain"])
  batch = _batch()
  loss = lambda model: lambda p: jnp.sum(registry.token_losses(model, p, batch) * batch["loss_mask"])  # noqa: E731
  plain_loss, plain_grads = jax.value_and_grad(loss(plain))(params["plain"])
  padded_loss, padded_grads = jax.value_and_grad(loss(padded))(params["padded"])
  assert padded_loss == plain_loss
  assert not np.asarray(padded_grads["embed_in"]["embedding"][VOCAB:]).any()
  assert not np.asarray(padded_grads["embed_out"]["kernel"][:, VOCAB:]).any()
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), real_part(padded_grads), plain_grads
  )
