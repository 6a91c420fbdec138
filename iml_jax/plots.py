"""The figures of a run and of a sweep, each written atomically as one PNG through the path layer."""

import dataclasses
import io
import os
import textwrap

import matplotlib
import numpy as np

from iml_jax import io_utils, metrics
from iml_jax.data.tasks import chance_level, score_of
from iml_jax.errors import IMLError
from iml_jax.stats import bootstrap_ci95, mean_ci95, per_seed, pooled_runs
from iml_jax.study_settings import PAPER_SUBSET_NAMES
from iml_jax.workdir import load_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the headless backend)

# Paper notation and colours (docs/study.md §3.2, §8.4), in legend order.
_COLOURS = {
  "q_no_replacement_baseline": "tab:green",
  "qd1consis": "tab:purple",
  "q": "tab:brown",
  "qd2incons": "tab:pink",
  "d1consis": "tab:blue",
  "d3consis": "tab:gray",
  "d2consis": "tab:red",
  "no_qd_baseline": "tab:orange",
  "qd1incons": "tab:olive",
  "qd2consis": "tab:cyan",
}
PLOT_SUBSETS = {subset: (PAPER_SUBSET_NAMES[subset], colour) for subset, colour in _COLOURS.items()}
OTHER_COLOURS = ("black", "gold", "magenta", "teal", "navy", "lime")  # none of the paper's


def save_figure(figure, path: str) -> None:
  """Writes the figure atomically (a reader never sees half a PNG) and frees it."""
  png = io.BytesIO()
  figure.savefig(png, format="png", dpi=120)
  plt.close(figure)
  io_utils.atomic_write_bytes(path, png.getvalue())


def fitted_title(axis, text: str, fontsize: float, **options) -> None:
  """`text` as the axis's title, wrapped to the figure's width (a long title is cut off otherwise)."""
  # Characters average about 0.6 em in the default font; 0.65 leaves room for wide ones.
  per_line = max(int(axis.figure.get_figwidth() * 72 / (0.65 * fontsize)), 10)
  axis.set_title(textwrap.fill(text, per_line, break_on_hyphens=False), fontsize=fontsize, **options)


@dataclasses.dataclass(frozen=True)
class CurveFrame:
  """What a figure of scores over epochs needs to know about the run: the score, the stages in training order
  with their epochs, and the score of guessing (None: the task has none)."""

  score: metrics.Score
  stage_epochs: tuple[tuple[str, int], ...]
  chance: float | None = None


def curve_frame(experiment) -> CurveFrame:
  """The axes of `experiment`'s curves (specs.Experiment): its score, its stages' epochs and chance."""
  stage_epochs = tuple((name, stage.epochs) for name, stage in experiment.stages.items())
  return CurveFrame(score_of(experiment.task), stage_epochs, chance_level(experiment.task))


def plot_subsets(frame: CurveFrame, rows: list[dict], path: str, title: str = "", pooled: bool = False) -> None:
  save_figure(subsets_figure(frame, rows, title, pooled), path)


def subsets_figure(frame: CurveFrame, rows: list[dict], title: str = "", pooled: bool = False):
  """The score per subset over the epochs of all stages (from the evaluation before training, epoch 0):
  mean and 95% t-interval over stage-1 seeds, or (`pooled`, the paper's figure) mean and 95% bootstrap interval
  over all runs; each stage named above its epochs, and the chance level where the task has one."""
  score = frame.score
  by_epoch = (
    {key: dict(enumerate(v)) for key, v in pooled_runs(rows, score.name).items()}
    if pooled
    else per_seed(rows, score.name)
  )
  n_seeds = len({r["seed"] for r in rows})
  n_runs = len({(r["seed"], r["seed_stage2"]) for r in rows})
  interval = bootstrap_ci95 if pooled else (lambda v: _t_band(*mean_ci95(v)))
  figure, axis = plt.subplots(figsize=(8, 4.5))
  # The paper's subsets in its notation and colours, then any other evaluated set under its own name.
  others = sorted({name for (_, _, name) in by_epoch} - set(PLOT_SUBSETS))
  for subset, (label, colour) in list(PLOT_SUBSETS.items()) + [
    (name, (name, OTHER_COLOURS[i % len(OTHER_COLOURS)])) for i, name in enumerate(others)
  ]:
    points = sorted(
      (epoch, float(np.mean(list(seeds.values()))), interval(list(seeds.values())))
      for (_, epoch, name), seeds in by_epoch.items()
      if name == subset
    )
    if not points:
      continue
    epochs = [p[0] for p in points]
    axis.plot(epochs, [p[1] for p in points], marker="o", markersize=3, color=colour, label=label)
    axis.fill_between(
      epochs,
      np.clip([p[2][0] for p in points], 0, score.upper_bound),
      np.clip([p[2][1] for p in points], 0, score.upper_bound),
      color=colour,
      alpha=0.2,
    )
  if frame.chance is not None:
    axis.axhline(frame.chance, color="gray", linestyle="--", linewidth=1, label="chance")
  start = 0
  for index, (name, epochs) in enumerate(frame.stage_epochs):
    if index:
      axis.axvline(start, color="black", linestyle=":", linewidth=1)
    end = start + epochs
    axis.text((start + end) / 2, 1.01, name, transform=axis.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    start = end
  axis.set_xlabel("epoch (all stages)")
  axis.set_ylabel({"em": "exact match", "mse": "mean squared error"}.get(score.name, score.name))
  over = (
    f"95% bootstrap CI over {n_runs} pooled runs (as the paper)" if pooled else f"95% CI over {n_seeds} stage-1 seed(s)"
  )
  fitted_title(axis, f"{title + ': ' if title else ''}{score.label} per subset, mean and {over}", 9, pad=14)
  axis.legend(fontsize=8, loc="best")
  figure.tight_layout()
  return figure


def _t_band(mean: float, half: float | None) -> tuple[float, float]:
  return mean - (half or 0.0), mean + (half or 0.0)


@dataclasses.dataclass(frozen=True)
class AlignmentAtBatch:
  """One run of an alignment-vs-batch grid: the first stage's last measurement."""

  batch_size: int
  labels: list[str]  # tag A's and tag B's question sets
  cos: list[dict]  # per label: {"mean", "ci95"} over stage-1 seeds
  cos_gap: dict | None  # stats.summarize_alignment's paired test of cos(A) - cos(B)


def alignment_by_batch(workdirs: list[str]) -> list[AlignmentAtBatch]:
  """Each workdir's alignment summary (summary.json), by batch size."""
  points = []
  for workdir in workdirs:
    try:
      config = load_config(workdir)
      summary = io_utils.read_json(os.path.join(workdir, "summary.json"))
    except (OSError, IMLError) as err:
      raise IMLError(f"{workdir}: no readable config.json and summary.json ({err})") from None
    stage_name = config.stage_names[0]
    alignment = summary.get("grad_alignment", {}).get(stage_name)
    if not alignment:
      raise IMLError(
        f"{workdir}/summary.json has no gradient alignment for stage {stage_name}; run "
        "python -m iml_jax.analyze --analysis=grad_alignment on it first"
      )
    labels = config.analysis.grad_alignment.sets.split(",")[2:]
    batch = config.stages[stage_name].batch_size
    points.append(
      AlignmentAtBatch(batch, labels, [alignment[label]["cos"] for label in labels], alignment.get("cos_gap"))
    )
  return sorted(points, key=lambda p: p.batch_size)


def plot_alignment_vs_batch(workdirs: list[str], path: str) -> None:
  """The study's §11.3 figure: definition–question cosine (tag A vs tag B, mean and 95% CI over seeds) at
  each run's batch size, from each workdir's summary.json (the first stage's last measurement)."""
  points = alignment_by_batch(workdirs)
  figure, axis = plt.subplots(figsize=(6, 4))
  for index, colour in ((0, "tab:blue"), (1, "tab:red")):
    label = points[0].labels[index]
    axis.errorbar(
      [p.batch_size for p in points],
      [p.cos[index]["mean"] for p in points],
      yerr=[p.cos[index]["ci95"] or 0.0 for p in points],
      marker="o",
      capsize=3,
      color=colour,
      label=f"{label} (tag {'AB'[index]})",
    )
  axis.set_xscale("log", base=2)
  axis.set_xlabel("batch size")
  axis.set_ylabel("cos(definition gradient, its QA gradients)")
  axis.legend()
  figure.tight_layout()
  save_figure(figure, path)


def plot_probe_accuracy(accuracy_TxL: np.ndarray, positions: list[str], classes: list[str], path: str) -> None:
  """The study's probe heat-map: cross-validated accuracy per (token position × layer)."""
  figure, axis = plt.subplots(figsize=(max(4.0, 1 + 0.5 * accuracy_TxL.shape[1]), 1 + 0.35 * len(positions)))
  image = axis.imshow(accuracy_TxL, vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
  axis.set_yticks(range(len(positions)), positions, fontsize=7)
  axis.set_xticks(range(accuracy_TxL.shape[1]), [str(i + 1) for i in range(accuracy_TxL.shape[1])])
  axis.set_xlabel("layer")
  fitted_title(axis, f"probe accuracy: {classes[0]} vs {classes[1]}", 9)
  figure.colorbar(image, ax=axis)
  figure.tight_layout()
  save_figure(figure, path)
