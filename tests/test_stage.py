"""Stage programs are shared between seeds exactly when everything the train step closes over agrees (that a seed
on shared programs gets the results it gets alone: test_experiment.py)."""

import dataclasses
import types

import numpy as np

from iml_jax import sharding, stage, train
from iml_jax.data import tasks
from iml_jax.models import from_config, registry
from iml_jax.specs import Experiment
from test_experiment import tiny_config


def _context(config, seed: int, tmp_path):
  spec = Experiment.from_config(config)
  task = tasks.for_seed(spec, seed, None)
  tokenizer = task.tokenizer(str(tmp_path / f"tokenizer_{seed}.json"))
  model = registry.build(from_config.model_config(spec.model, spec.data, spec.mesh, tokenizer, None, None))
  mesh = sharding.make_mesh(spec.mesh.shape)
  return types.SimpleNamespace(model=model, mesh=mesh, rules=sharding.rules_for(spec.mesh.rules))


def _programs(cache, ctx, stage_cfg, total_steps: int = 10, alias_rows=(3, 5)):
  mask = train.trainable_mask(registry.abstract_params(ctx.model), "alias_embeddings", np.asarray(alias_rows))
  layout = {"tokens": sharding.batch_sharding(ctx.mesh, ctx.rules, 2)}
  return cache.get(ctx, stage_cfg, total_steps, mask, layout)


def test_stages_share_programs_only_when_model_optimizer_steps_and_mask_agree(tmp_path):
  cache = stage.ProgramCache()
  config = tiny_config()
  first, second = _context(config, 0, tmp_path), _context(config, 1, tmp_path)
  stage_cfg = Experiment.from_config(config).stages["stage2"]
  shared = _programs(cache, first, stage_cfg)
  assert _programs(cache, second, stage_cfg) is shared  # another seed: an equal model, a mask equal in value
  assert _programs(cache, second, stage_cfg, total_steps=11) is not shared  # the schedule's length
  assert _programs(cache, second, stage_cfg, alias_rows=(3, 6)) is not shared  # other trainable rows
  faster = dataclasses.replace(
    stage_cfg, optimizer=dataclasses.replace(stage_cfg.optimizer, lr=stage_cfg.optimizer.lr * 2)
  )
  assert _programs(cache, second, faster) is not shared
  wider = tiny_config()
  wider.model.d_model *= 2
  assert _programs(cache, _context(wider, 0, tmp_path), stage_cfg) is not shared
  assert len(cache) == cache.kept  # the oldest of the five was let go
