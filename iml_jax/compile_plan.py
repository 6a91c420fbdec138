"""Every program a run of a config executes, lowered on abstract inputs for any mesh: each stage's train step (with
its gradient accumulation), greedy decoding (the prompt's prefill and the KV-cache loop) and, where the config
measures gradient alignment, the per-example gradient statistics. `tpu_plan` compiles them for TPU slices.

The shapes are read as a run reads them, on the host: the model from the config (a pretrained model's from its
local config.json, else the study's table of shapes and hub vocabularies), each stage's example count from the
first seed's data (from the synthetic knowledge base of the same size where the CVDB or T-REx file is not at hand),
evaluation prompts at their longest (`data.block_size`).
"""

import dataclasses
import functools
import os
import tempfile

import jax
import numpy as np

from iml_jax import grad_alignment, hf_import, model_io, sharding, specs, train
from iml_jax.data import batching, entities, tasks
from iml_jax.errors import IMLError
from iml_jax.models import decoding, from_config, registry
from iml_jax.models.families import HUB_VOCAB_SIZES, PRETRAINED
from iml_jax.workdir import plan_stage_runs

_KB_FILES = {"cvdb": "cvdb_path", "trex": "trex_path"}


@dataclasses.dataclass(frozen=True)
class StageShape:
  name: str
  batch_size: int
  grad_accum: int
  steps: int  # the steps of one run of the stage
  runs: int  # how many times the experiment runs it (stage-1 seeds, times stage-2 seeds after the split)
  optimizer: object  # specs.Optimizer
  trainable: str

  @property
  def program_key(self) -> tuple:
    """Stages with equal keys run the same program up to constants (learning rates, step counts)."""
    return (self.batch_size, self.grad_accum, self.optimizer.name, bool(self.optimizer.grad_clip), self.trainable)


@dataclasses.dataclass(frozen=True)
class RunShape:
  model: object  # the Flax module
  array_shapes: dict  # training array name -> (row shape, dtype)
  stages: tuple[StageShape, ...]
  alias_ids: np.ndarray  # rows an `alias_embeddings` stage trains (any rows give the same program)
  eval_batch: int
  prompt_width: int
  max_new_tokens: int
  eos_id: int
  alignment: tuple[int, int, int] | None  # (definitions, questions per definition, chunk)
  mesh: specs.Mesh  # the config's mesh shape and rules
  notes: tuple[str, ...]  # where a shape was not read as the run reads it

  @property
  def seq2seq(self) -> bool:
    return "inputs" in self.array_shapes


def run_shape(config) -> RunShape:
  """The shapes of every program of a run of `config` (host work only: data counts, model config)."""
  specs.Experiment.from_config(config)  # the config as given, checked
  if registry.SPECS[config.model.name].inputs == "arrays":
    raise IMLError(f"config field model.name = {config.model.name!r}: tpu_plan plans language models")
  notes = []
  data_config, scale = _with_data_at_hand(config, notes)
  experiment = specs.Experiment.from_config(data_config)
  task = tasks.for_seed(experiment, experiment.seed)
  with tempfile.TemporaryDirectory() as tokenizer_dir:
    model_cfg, tokenizer = _model_config(experiment, task, os.path.join(tokenizer_dir, "tokenizer.json"), notes)
  model = registry.build(model_cfg)
  runs = plan_stage_runs(experiment, "", experiment.seed)
  stages = []
  for name, stage in experiment.stages.items():
    first = next(r for r in runs if r.name == name)
    examples = round(scale * len(task.stage_data(first.seed_stage2, first.index, stage.train_subset).train))
    steps = batching.steps_per_epoch(examples, stage.batch_size, stage.grad_accum) * stage.epochs
    runs_of_stage = sum(r.name == name for r in runs) * experiment.n_seeds
    stages.append(
      StageShape(name, stage.batch_size, stage.grad_accum, steps, runs_of_stage, stage.optimizer, stage.trainable)
    )
  alias_ids = tokenizer.token_ids(task.alias_tokens()) if tokenizer and task.alias_tokens() else np.zeros(1, np.int32)
  alignment = experiment.analysis.grad_alignment
  return RunShape(
    model,
    model_io.kind_of(model).array_shapes(experiment.data),
    tuple(stages),
    alias_ids,
    experiment.eval.batch_size,
    experiment.data.block_size,
    experiment.eval.max_new_tokens,
    tokenizer.pad_id if tokenizer else 0,
    _alignment_shape(experiment, task, runs[0]) if alignment.enabled else None,
    experiment.mesh,
    tuple(notes),
  )


def _with_data_at_hand(config, notes: list):
  """(`config`, 1), or where its CVDB or T-REx file is not at hand (a copy reading the synthetic knowledge base of
  as many entities as it holds, the factor to scale example counts by): the six CVDB questions per person make
  the counts of both alike; T-REx's questions per work vary, so its counts are approximate."""
  field = _KB_FILES.get(config.data.get("knowledge_base"))
  if field is None or os.path.exists(config.data[field] or ""):
    return config, 1.0
  copy = config.copy_and_resolve_references()
  copy.data.knowledge_base = "synthetic"
  copy.data.num_entities = min(config.data.num_entities, entities.synthetic_capacity())
  scale = config.data.num_entities / copy.data.num_entities
  notes.append(
    f"data.{field} not at hand: example counts from the synthetic knowledge base of {copy.data.num_entities:,} "
    "entities" + (f", scaled by {scale:.3g}" if scale != 1 else "") + (", approximate" if field == "trex_path" else "")
  )
  return copy, scale


def _model_config(experiment: specs.Experiment, task, tokenizer_path: str, notes: list):
  """(model config as the run builds it, the task's tokenizer or None for a pretrained model)."""
  model, data, mesh = experiment.model, experiment.data, experiment.mesh
  if not model.init_from:
    tokenizer = task.tokenizer(tokenizer_path)
    return from_config.model_config(model, data, mesh, tokenizer, None, None), tokenizer
  if os.path.isdir(model.init_from):
    folder = model.init_from
    _, pretrained = hf_import.read_config(folder)
    hf_import.check_matches(pretrained, from_config.model_fields(model, data), folder)
    cfg = dataclasses.replace(pretrained, dtype=model.dtype)
  else:
    key = next((k for k, (_, hub_id, _) in PRETRAINED.items() if hub_id == model.init_from), None)
    if key is None:
      raise IMLError(
        f"config field model.init_from = {model.init_from!r}: no local folder, and not a model of the "
        "study's table; point it at a local copy of the model (its config.json is enough to plan)"
      )
    notes.append(f"{key}: shape from the study's table, {HUB_VOCAB_SIZES[key]:,} vocabulary rows as on the hub")
    cfg = registry.make_config(model.name, vocab_size=HUB_VOCAB_SIZES[key], **from_config.model_fields(model, data))
  rows = from_config.padded_vocab_size(model, mesh, cfg.vocab_size)
  return (
    dataclasses.replace(cfg, vocab_size=rows, valid_vocab=cfg.vocab_size) if rows != cfg.vocab_size else cfg
  ), None


def _alignment_shape(experiment: specs.Experiment, task, first_run) -> tuple[int, int, int]:
  """(definitions, questions per definition, chunk) of the largest set the analysis pairs up."""
  spec = experiment.analysis.grad_alignment
  evals = task.stage_data(first_run.seed_stage2, first_run.index, experiment.stages[first_run.name].train_subset).evals
  keys = spec.sets.split(",")
  shapes = []
  for defs_key, questions_key in ((keys[0], keys[2]), (keys[1], keys[3])):
    definitions, questions = grad_alignment.pair_up(evals[defs_key], evals[questions_key], task.aliases_in)
    if spec.max_definitions:
      definitions = definitions[: spec.max_definitions]
    shapes.append((len(definitions), len(questions[0]) if questions else 0))
  definitions, per_definition = max(shapes)
  return definitions, per_definition, spec.chunk


def _abstract(shape: tuple, dtype, sharding_=None) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, np.dtype(dtype), sharding=sharding_)


def abstract_batch(run: RunShape, rows: int, mesh, rules) -> dict:
  """A training batch of `rows` examples as global arrays split along the batch axis, as `stage.py` lays it out."""
  arrays = {name: ((rows,) + row, dtype) for name, (row, dtype) in run.array_shapes.items()}
  arrays["weights"] = ((rows,), np.float32)
  return {k: _abstract(s, d, sharding.batch_sharding(mesh, rules, len(s))) for k, (s, d) in arrays.items()}


def _trainable_mask(run: RunShape, stage: StageShape):
  return train.trainable_mask(registry.abstract_params(run.model), stage.trainable, run.alias_ids)


def train_step_lowered(run: RunShape, stage: StageShape, mesh, rules):
  """(the stage's train step, and with gradient accumulation its parts alone: [(one micro-batch's pass, grad_accum),
  (the update, 1)]), lowered. Whether XLA's cost analysis counts a loop's body once or per pass depends on the
  loop, so an accumulating step's FLOPs and bytes are summed from its parts."""
  batch = abstract_batch(run, stage.batch_size, mesh, rules)
  optimizer, state, step = train.stage_step(
    run.model,
    stage.optimizer,
    stage.steps,
    _trainable_mask(run, stage),
    stage.grad_accum,
    mesh,
    rules,
    {k: v.sharding for k, v in batch.items()},
  )
  with sharding.use_mesh(mesh, rules):
    lowered = step.lower(state, batch)
    parts = _step_parts(run, stage, optimizer, state, mesh, rules) if stage.grad_accum > 1 else []
  return lowered, parts


def _step_parts(run: RunShape, stage: StageShape, optimizer, state, mesh, rules) -> list:
  """[(one micro-batch's pass, grad_accum), (the update, 1)], lowered (with the mesh and rules in context)."""
  micro = abstract_batch(run, stage.batch_size // stage.grad_accum, mesh, rules)
  scalar = _abstract((), np.float32, sharding.replicated(mesh))
  sums = (scalar, scalar, state.params)
  one_pass = jax.jit(functools.partial(train.accumulate, run.model)).lower(state.params, sums, micro)
  update = jax.jit(functools.partial(train.apply_sums, optimizer), donate_argnums=0).lower(state, sums)
  return [(one_pass, stage.grad_accum), (update, 1)]


# Model options that lower the same arithmetic through loops, which XLA's cost analysis counts once: off, for counting
_LOOP_FREE = dict(scan_layers=False, loss_chunk=0, attention="einsum")


def train_step_flops(run: RunShape, stage: StageShape, rules, mesh) -> float:
  """The FLOPs of one step of the stage per device, as its program states them: its micro-batch pass and update
  lowered for one host device and counted by XLA's cost analysis before partitioning, with the model's loops
  unrolled (scanned layers, chunked loss and Splash's kernels compute the same products in loops, whose bodies
  the analysis counts once; attention is counted whole, masked half included). The passes are shared by the
  devices that split the work (the batch's data and fsdp axes, and the tensor axis where the rules use it); the
  update is counted whole (exact where the parameters are replicated, a small share of a step too high where they
  are sharded). XLA:TPU's count of the partitioned program runs short: it counts part of the collective-matmul
  loops it splits sharded products into (Pythia-2.8B's study step over 8 chips: 20.1 of 24.0 TFLOP per chip)."""
  cfg = run.model.cfg
  fields = {f.name for f in dataclasses.fields(cfg)}
  model = registry.build(dataclasses.replace(cfg, **{k: v for k, v in _LOOP_FREE.items() if k in fields}))
  run = dataclasses.replace(run, model=model)
  host = sharding.make_mesh((1,) * len(run.mesh.shape), jax.devices("cpu")[:1])
  optimizer = train.make_optimizer(stage.optimizer, stage.steps, _trainable_mask(run, stage))
  state = train.abstract_state(run.model, optimizer, host, rules)
  with sharding.use_mesh(host, rules):
    (one_pass, passes), (update, _) = _step_parts(run, stage, optimizer, state, host, rules)
  splitting = sharding.data_parallel_size(mesh) * (mesh.shape["tensor"] if sharding.uses_tensor_axis(rules) else 1)
  return passes * one_pass.cost_analysis()["flops"] / splitting + update.cost_analysis()["flops"]


def decode_lowered(run: RunShape, mesh, rules):
  """Greedy decoding of one evaluation batch at the longest prompt: prefill and the KV-cache loop in one program."""
  params = train.abstract_params(run.model, mesh, rules)
  layout = sharding.batch_sharding(mesh, rules, 2)
  prompts = _abstract((run.eval_batch, run.prompt_width), np.int32, layout)
  with sharding.use_mesh(mesh, rules):
    if run.seq2seq:
      mask = _abstract((run.eval_batch, run.prompt_width), np.bool_, layout)
      return decoding.greedy_decode_seq2seq.lower(run.model, params, prompts, mask, run.max_new_tokens, run.eos_id)
    return decoding.greedy_decode.lower(run.model, params, prompts, run.max_new_tokens, run.eos_id)


def alignment_lowered(run: RunShape, mesh, rules):
  """The per-example gradient statistics of the largest definition set with its questions."""
  definitions, per_definition, chunk = run.alignment
  params = train.abstract_params(run.model, mesh, rules)
  mask = _trainable_mask(run, run.stages[0])
  mask = None if mask is None else jax.tree.map(lambda a: _abstract(a.shape, a.dtype), mask)
  rows = {name: (row, dtype) for name, (row, dtype) in run.array_shapes.items()}
  defs = {k: _abstract((definitions,) + row, d) for k, (row, d) in rows.items()}
  questions = {k: _abstract((definitions, per_definition) + row, d) for k, (row, d) in rows.items()}
  with sharding.use_mesh(mesh, rules):
    return grad_alignment.pair_statistics.lower(run.model, params, defs, questions, mask, chunk)
