"""One training stage: resume or initialise, the step loop, periodic evaluation and checkpoints, DONE.

A stage's directory holds `checkpoints/`, `eval.jsonl` (EM/F1 per evaluated epoch and set),
`predictions.jsonl` (final epoch) and, once everything is written, the `DONE` marker. Resuming
restores the latest complete checkpoint; the data order is recomputed from the step number.
"""

import contextlib
import dataclasses
import functools
import gc
import json
import math
import os
import time

import jax
import numpy as np
from tqdm import tqdm

from iml_jax import grad_alignment, hf_import, model_io, preemption, sharding, specs, state_memory, train
from iml_jax.checkpointing import DamagedCheckpoint, StageCheckpoints
from iml_jax.data import batching
from iml_jax.data.tasks import Task, score_of
from iml_jax.data.tokenization import TextTokenizer
from iml_jax.errors import IMLError
from iml_jax.models import registry
from iml_jax.io_utils import append_jsonl, atomic_write_text, drop_jsonl_records
from iml_jax.workdir import DONE_FILE, StageRun, damaged_stage, is_done, mark_done, read_done
from iml_jax.writers import MetricWriter


@dataclasses.dataclass
class SeedContext:
  """What every stage of one stage-1 seed shares."""

  experiment: specs.Experiment
  seed: int
  task: Task
  tokenizer: TextTokenizer
  model: object
  mesh: object
  rules: object
  writer: MetricWriter
  pretrained_folder: str | None = None  # Hugging Face weights the first stage starts from
  programs: "ProgramCache" = dataclasses.field(default_factory=lambda: ProgramCache())  # shared by a run's seeds

  @functools.cached_property
  def inputs(self):
    """How the model reads the task's examples: training arrays, eval sets, scores (model_io.py)."""
    return model_io.for_model(self.model, self.experiment, self.task, self.tokenizer)


def final_params(directory: str, abstract_params):
  """The parameters a finished stage ended with."""
  if not is_done(directory):
    raise IMLError(f"stage {directory} has not finished (no DONE marker); rerun the experiment to finish it")
  step = read_done(directory)["step"]
  checkpoints = StageCheckpoints(os.path.join(directory, "checkpoints"))
  latest = checkpoints.latest_step()
  if step != latest:
    checkpoints.close()
    damaged_stage(
      directory,
      f"its marker {os.path.join(directory, DONE_FILE)} names step {step}, but its latest "
      f"checkpoint is {'missing' if latest is None else f'step {latest}'}",
    )
  try:
    params = checkpoints.restore_params(step, abstract_params)
  except DamagedCheckpoint as err:
    damaged_stage(directory, str(err))
  finally:
    checkpoints.close()
  return params


def alias_token_ids(ctx: SeedContext, stage: specs.Stage) -> np.ndarray | None:
  """The alias tokens' ids where a stage needs them: its trainable rows, or the tokens the loss leaves out."""
  if stage.trainable == "alias_embeddings" or ctx.experiment.loss.exclude_alias_tokens:
    return ctx.tokenizer.token_ids(ctx.task.alias_tokens())
  return None


def _encode(ctx: SeedContext, examples, alias_ids: np.ndarray | None) -> dict[str, np.ndarray]:
  """Examples as the stage trains them: the loss mask leaves out the alias tokens when the config says so."""
  return ctx.inputs.encode(examples, alias_ids if ctx.experiment.loss.exclude_alias_tokens else None)


@dataclasses.dataclass
class PreparedStage:
  """What the step loop of one stage needs, built before its first step: the train state (resumed or fresh),
  the compiled step, the batches by step number, the evaluation sets and the checkpoint manager."""

  run: StageRun
  per_epoch: int
  total_steps: int
  state: train.TrainState
  train_step: object
  batches: batching.StageBatches
  layout: dict  # batch array name -> its sharding (split along the batch axis)
  eval_sets: list
  alignment_pairs: dict | None
  trainable: object  # the trainable-parameter mask
  schedule: object  # step -> learning rate
  tokens_per_step: int  # token positions per step, padding included (0: array models)
  checkpoints: StageCheckpoints

  def global_batch(self, step: int) -> dict:
    """The batch that trains step `step` + 1, as global arrays laid out over the mesh."""
    return {k: sharding.put_global_batch(v, self.layout[k]) for k, v in self.batches.at(step).items()}


def run_stage(ctx: SeedContext, run: StageRun) -> None:
  if is_done(run.directory):
    read_done(run.directory)  # a damaged finished stage is an error naming the file, never silently reused
    return
  if preemption.stop_requested_before_stage():  # SIGTERM while starting up or between stages: no step to save
    raise preemption.Preempted(run.label, None)
  prepared = prepare_stage(ctx, run)
  with _long_lived_objects_frozen():
    train_loop(ctx, prepared)
  prepared.checkpoints.close()
  mark_done(run.directory, prepared.total_steps, ctx.experiment.stages[run.name].epochs)


@contextlib.contextmanager
def _long_lived_objects_frozen():
  """Keeps the objects alive when the step loop starts (the task's examples, the evaluation sets, the model) out
  of the garbage collector's full collections while it runs: the examples a redrawn epoch allocates would
  otherwise trigger collections that walk all of them again, about as costly as the redraw itself."""
  gc.collect()
  gc.freeze()
  try:
    yield
  finally:
    gc.unfreeze()


def prepare_stage(ctx: SeedContext, run: StageRun) -> PreparedStage:
  """The stage's data, optimizer and train state (checked to fit, resumed from its latest checkpoint), compiled
  step and evaluation sets; what a killed process logged after the resumed step is dropped."""
  experiment, stage = ctx.experiment, ctx.experiment.stages[run.name]
  data = ctx.task.stage_data(run.seed_stage2, run.index, stage.train_subset)
  if not data.train:
    raise IMLError(
      f"config field stages.{run.name}.train_subset = {stage.train_subset!r} selects no "
      "training examples with the configured fractions"
    )
  per_epoch = batching.steps_per_epoch(len(data.train), stage.batch_size, stage.grad_accum)
  total_steps = per_epoch * stage.epochs

  alias_ids = alias_token_ids(ctx, stage)
  mask = train.trainable_mask(registry.abstract_params(ctx.model), stage.trainable, alias_ids)
  # Every batch array is split along its first (batch) axis, whatever its rank.
  template = _encode(ctx, data.train[:1], alias_ids)
  state_memory.check_batch_fits(batching.batch_bytes(template, stage.batch_size), run.name, stage.batch_size)
  layout = {k: sharding.batch_sharding(ctx.mesh, ctx.rules, v.ndim) for k, v in template.items()}
  layout["weights"] = sharding.batch_sharding(ctx.mesh, ctx.rules, 1)
  programs = ctx.programs.get(ctx, stage, total_steps, mask, layout)
  state_memory.check_fits(programs.abstract, run.name)
  checkpoints = StageCheckpoints(os.path.join(run.directory, "checkpoints"), experiment.checkpoint.max_to_keep or None)
  state = _initial_state(ctx, run, programs, checkpoints)
  _forget_logged_after(ctx, run, int(state.step))
  return PreparedStage(
    run,
    per_epoch,
    total_steps,
    state,
    programs.train_step,
    batching.StageBatches(
      data, lambda examples: _encode(ctx, examples, alias_ids), run.order_key, stage.batch_size, per_epoch
    ),
    layout,
    ctx.inputs.eval_sets(data.evals, [k for k in data.evals if is_evaluated(experiment.eval.subsets, k)]),
    alignment_sets(ctx, data.evals, alias_ids) if experiment.analysis.grad_alignment.enabled else None,
    mask,
    train.learning_rate_schedule(stage.optimizer, total_steps),
    stage.batch_size * ctx.inputs.tokens_per_example(template),
    checkpoints,
  )


@dataclasses.dataclass(frozen=True)
class StagePrograms:
  """A stage's optimizer, the shapes and shardings of its train state, its jitted train step and its jitted
  `rng -> parameters` (a stage that starts from scratch)."""

  optimizer: object
  abstract: train.TrainState
  train_step: object
  initializer: object


class ProgramCache:
  """One run's stage programs, by everything the step closes over: a stage of a later seed with the same model,
  optimizer settings, step count, trainable mask, mesh and batch layout runs the programs the first seed traced
  and compiled instead of tracing, lowering and loading them again. The programs are the same, so are the results.
  The `kept` most recently built are held (a mask that differs by seed makes a set per seed)."""

  def __init__(self, kept: int = 4):
    self.kept, self._programs = kept, {}

  def __len__(self) -> int:
    return len(self._programs)

  def get(self, ctx: "SeedContext", stage: specs.Stage, total_steps: int, mask, layout: dict) -> StagePrograms:
    key = (
      ctx.model,
      ctx.mesh,
      ctx.rules,
      stage.optimizer,
      stage.grad_accum,
      total_steps,
      _fingerprint(mask),
      tuple(sorted(layout.items())),
    )
    if key not in self._programs:
      optimizer, abstract, step = train.stage_step(
        ctx.model, stage.optimizer, total_steps, mask, stage.grad_accum, ctx.mesh, ctx.rules, layout
      )
      while len(self._programs) >= self.kept:
        del self._programs[next(iter(self._programs))]
      initializer = train.make_initializer(ctx.model, train.shardings_of(abstract))
      self._programs[key] = StagePrograms(optimizer, abstract, step, initializer)
    return self._programs[key]


def _fingerprint(tree) -> tuple:
  """The structure, shapes, dtypes and values of a tree of small arrays (a trainable mask), hashable."""
  leaves, structure = jax.tree_util.tree_flatten(tree)
  return (structure, tuple((a.shape, str(a.dtype), np.asarray(a).tobytes()) for a in leaves))


def train_loop(ctx: SeedContext, prepared: PreparedStage) -> None:
  """Steps from the prepared state to the stage's end: losses logged every `log_every` steps and at each epoch's
  end, evaluations every `eval_every` epochs, checkpoints periodically, at the end and when asked to stop."""
  experiment, run, per_epoch, total_steps = ctx.experiment, prepared.run, prepared.per_epoch, prepared.total_steps
  stage = experiment.stages[run.name]
  state, step, loss = prepared.state, int(prepared.state.step), None
  clock = (time.perf_counter(), step)  # time and step of the last log: tokens/s between logs
  first_step = step + 1  # the first step this run trains of the stage: see preemption.stop_requested
  progress = tqdm(
    total=total_steps,
    initial=step,
    desc=run.label,
    unit="step",
    position=1,
    disable=jax.process_index() != 0 or not experiment.progress_bar,
    leave=False,
  )
  log_lines = jax.process_index() == 0 and not experiment.progress_bar  # a batch job's log: one line per log instead
  if step == 0 and run.index == 0:  # the model before any training: the first point of every curve
    _evaluate(ctx, run, state.params, prepared.eval_sets, 0, 0, final=False)
  while step < total_steps:
    state, loss = prepared.train_step(state, prepared.global_batch(step))
    step += 1
    progress.update(1)
    epoch_end = step % per_epoch == 0
    if step % experiment.log_every == 0 or epoch_end:
      value = _finite_loss(loss, run, step)  # waits for the step: the clock below measures finished work
      now = time.perf_counter()
      rates = (
        {"perf/tokens_per_s": prepared.tokens_per_step * (step - clock[1]) / (now - clock[0])}
        if prepared.tokens_per_step
        else {}
      )
      clock = (now, step)
      lr = float(prepared.schedule(step - 1))
      progress.set_postfix(loss=f"{value:.4f}")
      if log_lines:
        rate = f", {rates['perf/tokens_per_s']:,.0f} tokens/s" if rates else ""
        print(
          f"{run.label}: step {step}/{total_steps}, epoch {step / per_epoch:.2f}, loss {value:.4f}, lr {lr:.3g}{rate}",
          flush=True,
        )
      ctx.writer.write(
        run.label,
        step,
        {"train/loss": value, "train/lr": lr},
        timings=rates,
        seed=ctx.seed,
        seed_stage2=run.seed_stage2,
        stage=run.name,
        epoch=step / per_epoch,
      )
    if epoch_end and ((step // per_epoch) % stage.eval_every == 0 or step == total_steps):
      _evaluate(ctx, run, state.params, prepared.eval_sets, step, step // per_epoch, final=step == total_steps)
      if prepared.alignment_pairs:
        measure_alignment(ctx, run, state.params, prepared.alignment_pairs, prepared.trainable, step, step // per_epoch)
    periodic = experiment.checkpoint.every_steps and step % experiment.checkpoint.every_steps == 0
    stop = step < total_steps and preemption.stop_requested(step, first=step == first_step)
    if step == total_steps or periodic or stop:
      _finite_loss(loss, run, step)
      prepared.checkpoints.save(step, state.params, state.opt_state, {"step": step, "epoch": step / per_epoch})
    if stop:
      progress.close()
      prepared.checkpoints.close()
      raise preemption.Preempted(run.label, step)
  progress.close()


def _initial_state(ctx: SeedContext, run: StageRun, programs: StagePrograms, checkpoints) -> train.TrainState:
  """Resume from the stage's latest checkpoint; else start from the previous stage's final parameters
  (the first stage: pretrained weights or a fresh initialisation) with a fresh optimizer."""
  abstract = programs.abstract
  unverified = checkpoints.discard_unverified()
  latest = checkpoints.latest_step()
  if unverified and jax.process_index() == 0:
    print(
      f"{run.label}: checkpoint step{'s' * (len(unverified) > 1)} {', '.join(map(str, unverified))} had no digest "
      f"file (its save did not finish) and {'were' if len(unverified) > 1 else 'was'} deleted; "
      f"{'the stage starts again' if latest is None else f'resuming from step {latest}'}",
      flush=True,
    )
  if latest is not None:
    try:
      params, opt_state, _ = checkpoints.restore(latest, abstract.params, abstract.opt_state)
    except DamagedCheckpoint as err:
      raise IMLError(
        f"{err}. Delete the directory {checkpoints.directory}/{latest} and rerun the same command: the "
        "stage resumes from the checkpoint before it, or from its start, with the same results"
      ) from None
    return train.TrainState(jax.device_put(np.int32(latest), abstract.step.sharding), params, opt_state)
  if run.init_from:
    init = final_params(run.init_from, abstract.params)
  elif ctx.pretrained_folder:
    init = registry.to_layout(
      hf_import.load_hf_model(ctx.pretrained_folder, ctx.experiment.model.allow_pickle_weights)[1], abstract.params
    )
  else:
    init = None
  return train.create_state(
    ctx.model, programs.optimizer, abstract, jax.random.key(ctx.seed), init, programs.initializer
  )


def _forget_logged_after(ctx: SeedContext, run: StageRun, step: int) -> None:
  """A killed process may have evaluated and logged steps past the checkpoint the stage resumes from (every
  step, the evaluation before training included, when there is none: `step` 0); the resumed run records them
  again, so the earlier records are dropped and each step is recorded once."""
  if jax.process_index() != 0:
    return
  for name in ("eval.jsonl", "grad_alignment.jsonl"):
    drop_jsonl_records(os.path.join(run.directory, name), lambda record: step == 0 or record["step"] > step)
  ctx.writer.restart(run.label, step)


def alignment_sets(ctx: SeedContext, evals: dict, alias_ids: np.ndarray | None) -> dict[str, tuple[dict, dict]]:
  """Encoded (definitions [D, ...], their questions [D, K, ...]) per tag, from the sets that
  `analysis.grad_alignment.sets` names: tag-A definitions, tag-B definitions, tag-A questions, tag-B questions.
  They are encoded exactly as the stage trains (`alias_ids` from `alias_token_ids`), so the analysis
  differentiates the loss that training minimised."""
  spec = ctx.experiment.analysis.grad_alignment
  keys = spec.sets.split(",")
  sets = {}
  for defs_key, questions_key in ((keys[0], keys[2]), (keys[1], keys[3])):
    for key in (defs_key, questions_key):
      if key not in evals:
        raise IMLError(
          f"config field analysis.grad_alignment.sets names {key!r}, which this task does not build; "
          f"known: {sorted(evals)}"
        )
    definitions, questions = grad_alignment.pair_up(evals[defs_key], evals[questions_key], ctx.task.aliases_in)
    if not definitions:
      raise IMLError(
        f"config field analysis.grad_alignment.sets: no definition in {defs_key} has a question in {questions_key}"
      )
    if spec.max_definitions:
      definitions, questions = definitions[: spec.max_definitions], questions[: spec.max_definitions]
    encoded_questions = _encode(ctx, [q for row in questions for q in row], alias_ids)
    sets[questions_key] = (
      _encode(ctx, definitions, alias_ids),
      {k: v.reshape((len(definitions), -1) + v.shape[1:]) for k, v in encoded_questions.items()},
    )
  return sets


def measure_alignment(ctx: SeedContext, run: StageRun, params, sets: dict, mask, step: int, epoch: int) -> dict:
  """Gradient alignment over `alignment_sets` at one point of a stage: scalars to the metric writers, every
  pair's values to `<stage>/grad_alignment.jsonl`."""
  result = grad_alignment.alignment(ctx.model, params, sets, mask, ctx.experiment.analysis.grad_alignment.chunk)
  if jax.process_index() == 0:
    scalars = result.scalars()
    ctx.writer.write(run.label, step, scalars, seed=ctx.seed, seed_stage2=run.seed_stage2, stage=run.name, epoch=epoch)
    records = [
      {"epoch": epoch, "step": step, "set": label, **{k: v.tolist() for k, v in stats.items()}}
      for label, stats in result.pairs.items()
    ]
    records.append(
      {
        "epoch": epoch,
        "step": step,
        "set": "all",
        "variance": result.variance,
        "mean_cos_to_mean": result.mean_cos_to_mean,
      }
    )
    append_jsonl(os.path.join(run.directory, "grad_alignment.jsonl"), records)
  return result.scalars()


def is_evaluated(patterns, name: str) -> bool:
  if patterns == "all":
    return "train" not in name  # the study's EM callback skips train_* sets
  return name in patterns.split(",")


def _finite_loss(loss, run: StageRun, step: int) -> float:
  value = float(loss)
  if not math.isfinite(value):
    raise IMLError(
      f"training loss is {value} at step {step} of stage {run.name} ({run.directory}); "
      f"nothing was saved after the last finite checkpoint. Lower stages.{run.name}.optimizer.lr "
      "or use model.dtype='float32'"
    )
  return value


def _evaluate(ctx: SeedContext, run: StageRun, params, eval_sets, step: int, epoch: int, final: bool) -> None:
  start = time.perf_counter()
  results = ctx.inputs.evaluate(ctx.model, params, eval_sets, ctx.mesh, ctx.rules)
  if jax.process_index() != 0:
    return
  if not ctx.experiment.progress_bar:
    seconds, examples = time.perf_counter() - start, sum(len(s.examples) for s in eval_sets)
    rate = f"{examples:,} examples, {examples / seconds:,.0f} examples/s"
    print(f"{run.label}: evaluated at epoch {epoch} in {seconds:.1f} s ({rate})", flush=True)
  fields = score_of(ctx.experiment.task).fields
  records = [{"epoch": epoch, "step": step, "subset": name, **{f: r[f] for f in fields}} for name, r in results.items()]
  append_jsonl(os.path.join(run.directory, "eval.jsonl"), records)
  scalars = {f"eval/{name}_{f.upper()}": r[f] for name, r in results.items() for f in fields}
  ctx.writer.write(run.label, step, scalars, seed=ctx.seed, seed_stage2=run.seed_stage2, stage=run.name, epoch=epoch)
  if final:
    lines = [
      json.dumps({"subset": s.name, **ex.described(), "answer": ex.answer, "prediction": pred})
      for s in eval_sets
      for ex, pred in zip(s.examples, results[s.name]["predictions"])
    ]
    atomic_write_text(os.path.join(run.directory, "predictions.jsonl"), "\n".join(lines) + "\n")
