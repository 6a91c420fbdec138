"""The train-state memory check: exact per-device bytes from the abstract state, and a model too large for the
machine refused in one line before anything is allocated or left in the workdir."""

import os

import jax
import pytest

from iml_jax import experiment, state_memory, sharding, train
from iml_jax.errors import IMLError
from iml_jax.models.decoder import DecoderConfig, DecoderLM
from test_experiment import tiny_config


def _abstract(mesh_shape, rules, optimizer_name):
  model = DecoderLM(DecoderConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, d_mlp=64, max_len=16))
  opt = tiny_config().stages.stage1.optimizer
  opt.name = optimizer_name
  optimizer = train.make_optimizer(opt, 10)
  return train.abstract_state(model, optimizer, sharding.make_mesh(mesh_shape), sharding.rules_for(rules))


def test_adamw_state_is_four_copies_of_the_parameters_plus_counters():
  abstract = _abstract((8, 1, 1), "dp", "adamw")  # replicated: each device holds everything
  param_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract.params))
  counter_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(abstract.opt_state) if leaf.ndim == 0)
  # parameters, gradients, first and second moments (fp32), step and optimizer counters
  assert state_memory.state_bytes_per_device(abstract) == 4 * param_bytes + counter_bytes + 4


def test_sharding_the_parameters_divides_what_each_device_holds():
  replicated = state_memory.state_bytes_per_device(_abstract((8, 1, 1), "dp", "adamw"))
  sharded = state_memory.state_bytes_per_device(_abstract((1, 8, 1), "fsdp", "adamw"))
  assert sharded < replicated / 4  # every weight matrix is split 8 ways; biases and norms may stay whole


def test_a_cpu_device_gets_its_share_of_the_machine_memory():
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  assert state_memory.device_memory_bytes(jax.local_devices()[0]) == total // jax.local_device_count()


def test_a_model_too_large_is_one_line_and_leaves_a_fresh_workdir_empty(tmp_path):
  config = tiny_config(n_seeds=1)
  config.model.vocab_multiple = 10**9  # an embedding of 10^9 rows: 64 GB of parameters alone
  with pytest.raises(IMLError) as raised:
    experiment.run(config, str(tmp_path))
  message = str(raised.value)
  assert "\n" not in message and message.startswith("stage stage1: parameters, gradients and optimizer state need")
  assert "GiB per device" in message and "model.vocab_multiple" in message
  assert os.listdir(tmp_path) == []
