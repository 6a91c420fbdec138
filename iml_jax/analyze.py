r"""Analyses of a finished (or partly finished) run, on its saved checkpoints.

python -m iml_jax.analyze --workdir=DIR --analysis=grad_alignment [--stage=seed_0/stage1]
    Gradient alignment (docs/study.md §9) with the final parameters of every finished stage (or the one named),
    over the sets `analysis.grad_alignment.sets` names: records in <stage>/grad_alignment.jsonl, scalars in
    metrics.jsonl and TensorBoard, means over seeds in summary.json.
python -m iml_jax.analyze --workdir=DIR --analysis=probes
    Linear probes (docs/study.md §10) on the final parameters of `analysis.probes.stage` of every seed: accuracy
    per (token position × layer) in <stage>/probes.json and plots/probes_seed_<S>.png.
Both read the run's config from DIR/config.json; `--set=analysis.probes.c=0.1,...` changes analysis settings
(`analysis.*`, `eval.batch_size`). `--config=CONFIG` (with `--config.<field>=...` overrides) gives the config
instead; it must describe the same run.
python -m iml_jax.analyze --analysis=alignment_vs_batch --workdirs=DIR1,DIR2,... --out=plot.png
    The study's figure: definition–question cosine vs batch size, tag A vs tag B, 95% CIs over seeds.
"""

import functools
import os

from absl import app, flags, logging
from ml_collections import config_flags

from iml_jax import cli, compilation_cache

ANALYSES = ("grad_alignment", "probes", "alignment_vs_batch")
_SETTABLE = ("analysis.", "eval.batch_size")
_SAVED_CONFIG_REMEDY = "Leave out --config to analyse with the config the run saved (config.json)"


def run_config(config_file, workdir: str, settings: list[str]):
  """The config to analyse `workdir` with: `config_file` (from --config) or the one the run saved, with
  `settings` ("field=value", analysis settings only) applied to the saved one."""
  from iml_jax import workdir as workdir_layout
  from iml_jax.errors import IMLError

  if config_file is not None:
    if settings:
      raise IMLError("--set changes the saved config; with --config, use --config.<field>=<value>")
    return config_file
  try:
    config = workdir_layout.load_config(workdir)
  except (OSError, IMLError) as err:
    raise IMLError(f"--workdir={workdir} holds no saved config ({err}); pass the run's --config") from None
  for setting in settings:
    field, equals, text = setting.partition("=")
    if not (equals and field.startswith(_SETTABLE)):
      raise IMLError(f"--set {setting!r}: expected field=value with a field under analysis. or eval.batch_size")
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
      node = node.get(part) if hasattr(node, "get") else None
    if node is None or leaf not in node:
      raise IMLError(f"--set {setting!r}: the config has no field {field}")
    node[leaf] = _parsed_like(node[leaf], text, setting)
  return config


def _parsed_like(current, text: str, setting: str):
  """`text` as a value of `current`'s type."""
  from iml_jax.errors import IMLError

  if isinstance(current, bool):
    if text.lower() not in ("true", "false"):
      raise IMLError(f"--set {setting!r}: expected true or false")
    return text.lower() == "true"
  try:
    return type(current)(text)
  except ValueError:
    raise IMLError(f"--set {setting!r}: expected a value of type {type(current).__name__}") from None


def grad_alignment_on_checkpoints(config, workdir: str, only_stage: str = "") -> dict:

  from iml_jax import experiment, run_report, stage, train
  from iml_jax import workdir as workdir_layout
  from iml_jax.errors import IMLError
  from iml_jax.models import registry

  measured = 0
  with experiment.seed_contexts(config, workdir, remedy=_SAVED_CONFIG_REMEDY) as (spec, contexts):
    for ctx in contexts:
      abstract = registry.abstract_params(ctx.model)
      for run in workdir_layout.plan_stage_runs(spec, workdir, ctx.seed):
        if (only_stage and run.label != only_stage) or not workdir_layout.is_done(run.directory):
          continue
        trained = spec.stages[run.name]
        alias_ids = stage.alias_token_ids(ctx, trained)
        mask = train.trainable_mask(abstract, trained.trainable, alias_ids)
        done = workdir_layout.read_done(run.directory)
        data = ctx.task.stage_data(run.seed_stage2, run.index, trained.train_subset)
        params = stage.final_params(run.directory, abstract)
        stage.measure_alignment(
          ctx, run, params, stage.alignment_sets(ctx, data.evals, alias_ids), mask, done["step"], done["epochs"]
        )
        measured += 1
    if not measured:
      raise IMLError(f"no finished stage{' ' + only_stage if only_stage else ''} in {workdir} to analyse")
    return run_report.write_report(spec, workdir, print_table=False)


def probes_on_checkpoints(config, workdir: str) -> dict[int, float]:
  """{seed: best probe accuracy}; writes each seed's accuracy table and heat-map."""

  import numpy as np

  from iml_jax import experiment, plots, probes, stage
  from iml_jax import workdir as workdir_layout
  from iml_jax.errors import IMLError
  from iml_jax.io_utils import atomic_write_json
  from iml_jax.models import registry

  with experiment.seed_contexts(config, workdir, remedy=_SAVED_CONFIG_REMEDY) as (spec, contexts):
    probed = spec.analysis.probes
    stage_name = probed.stage or spec.stage_names[0]
    if stage_name not in spec.stages:
      raise IMLError(f"config field analysis.probes.stage = {stage_name!r}: expected one of {list(spec.stage_names)}")
    classes = probed.classes.split(",")
    best = {}
    for ctx in contexts:
      run = next(r for r in workdir_layout.plan_stage_runs(spec, workdir, ctx.seed) if r.name == stage_name)
      evals = ctx.task.stage_data(run.seed_stage2, run.index, spec.stages[stage_name].train_subset).evals
      missing = [c for c in classes if c not in evals]
      if len(classes) != 2 or missing:
        raise IMLError(
          f"config field analysis.probes.classes = {probed.classes!r}: expected two eval sets of {sorted(evals)}"
        )
      selected = [
        probes.one_question_per_alias(
          [ex for ex in evals[c] if probed.question_filter in ex.prompt], ctx.task.aliases_in
        )
        for c in classes
      ]
      tokens, labels = probes.equal_length_questions(ctx.tokenizer, *selected)
      abstract = registry.abstract_params(ctx.model)
      params = stage.final_params(run.directory, abstract)
      batch = spec.eval.batch_size
      states = np.concatenate(
        [
          np.asarray(probes.hidden_states(ctx.model, params, tokens[i : i + batch]))
          for i in range(0, len(tokens), batch)
        ],
        axis=1,
      )
      accuracy = probes.probe_accuracy(states, labels, probed.c, probed.folds)
      positions = [ctx.tokenizer.backend.id_to_token(int(t)) for t in tokens[0]]
      atomic_write_json(
        os.path.join(run.directory, "probes.json"),
        {
          "classes": classes,
          "question_filter": probed.question_filter,
          "questions_per_class": len(labels) // 2,
          "example_tokens": positions,
          "accuracy_position_by_layer": accuracy.tolist(),
        },
      )
      plots.plot_probe_accuracy(
        accuracy, positions, classes, os.path.join(workdir, "plots", f"probes_seed_{ctx.seed}.png")
      )
      best[ctx.seed] = float(accuracy.max())
  return best


def main(argv, flag_values):
  del argv
  logging.set_verbosity(logging.WARNING)
  from iml_jax import plots, stats
  from iml_jax.data import tasks
  from iml_jax.errors import IMLError

  analysis, workdir = flag_values["analysis"].value, flag_values["workdir"].value
  try:
    compilation_cache.enable_from_flag()
    if analysis in ("grad_alignment", "probes"):
      if not workdir:
        raise IMLError(f"--analysis={analysis} needs --workdir")
      config = run_config(flag_values["config"].value, workdir, flag_values["set"].value)
      if tasks.array_model(config.task):
        raise IMLError(f"--analysis={analysis} reads token sequences; config field task = {config.task!r} has arrays")
    if analysis == "grad_alignment":
      summary = grad_alignment_on_checkpoints(config, workdir, flag_values["stage"].value)
      print(stats.format_alignment(summary.get("grad_alignment", {})))
      print(
        f"every number: {os.path.join(workdir, 'summary.json')} (grad_alignment), pairs in <stage>/grad_alignment.jsonl"
      )
    elif analysis == "probes":
      best = probes_on_checkpoints(config, workdir)
      values = list(best.values())
      print(
        f"linear probes: best accuracy {sum(values) / len(values):.3f} over {len(values)} seed(s) "
        f"(range {min(values):.3f}-{max(values):.3f}; chance 0.5)"
      )
      for seed, accuracy in best.items():
        print(f"  seed {seed}: {accuracy:.3f}")
      print(f"every position and layer: <stage>/probes.json, plots/probes_seed_<seed>.png under {workdir}")
    else:
      workdirs, out = flag_values["workdirs"].value, flag_values["out"].value
      if not (workdirs and out):
        raise IMLError("--analysis=alignment_vs_batch needs --workdirs and --out")
      plots.plot_alignment_vs_batch(workdirs, out)
      print(stats.format_alignment_vs_batch(plots.alignment_by_batch(workdirs)))
      print(f"wrote {out}")
  except IMLError as err:
    cli.fail("iml_jax.analyze", err)


if __name__ == "__main__":  # flags only here: tests import the library next to main.py's own flags
  config_flags.DEFINE_config_file(
    "config",
    None,
    "The run's config file (configs/*.py[:args]); default: the config the run saved in --workdir.",
    lock_config=True,
  )
  flags.DEFINE_string("workdir", None, "The run's workdir.")
  flags.DEFINE_list(
    "set",
    [],
    "field=value,...: analysis settings changed in the saved config (fields under analysis. and eval.batch_size).",
  )
  flags.DEFINE_enum("analysis", None, ANALYSES, "Which analysis.")
  flags.DEFINE_string("stage", "", "Only this stage directory (relative to the workdir).")
  flags.DEFINE_list("workdirs", [], "alignment_vs_batch: workdirs of one config at several batch sizes.")
  flags.DEFINE_string("out", "", "alignment_vs_batch: the plot to write (.png).")
  flags.mark_flags_as_required(["analysis"])
  flags.adopt_module_key_flags(compilation_cache)  # --compilation_cache in --help
  app.run(functools.partial(main, flag_values=flags.FLAGS), flags_parser=cli.flags_parser("iml_jax.analyze"))
