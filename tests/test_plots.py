"""What the run figure shows: a curve from the evaluation before training, each stage named over its epochs, the
chance level where the task has one; sweep figures named by their settings."""

from iml_jax import config_blocks as blocks
from iml_jax import plots, sweep_report
from iml_jax.specs import Experiment


def _config(task="numeric"):
  stages = dict(stage1=blocks.stage("stage1", 4, 8), stage2=blocks.stage("stage2", 2, 8))
  data = blocks.numeric_data() if task == "numeric" else blocks.define_data()
  return blocks.base(task, data, blocks.gpt_neox(), stages, n_seeds=2)


def _rows():
  return [
    dict(
      seed=seed,
      seed_stage2=0,
      stage=stage,
      epoch=epoch,
      global_epoch=offset + epoch,
      subset=subset,
      em=0.5 + 0.05 * (offset + epoch) * (subset == "qd1consis"),
      f1=0.0,
    )
    for seed in (0, 1)
    for stage, offset, epochs in (("stage1", 0, (0, 2, 4)), ("stage2", 4, (1, 2)))
    for epoch in epochs
    for subset in ("qd1consis", "d1consis")
  ]


def test_the_run_figure_starts_before_training_names_the_stages_and_shows_chance():
  axis = plots.subsets_figure(plots.curve_frame(Experiment.from_config(_config())), _rows()).axes[0]
  curves = {line.get_label(): line for line in axis.get_lines()}
  assert list(curves["D1cons QA1"].get_xdata()) == [0, 2, 4, 5, 6]  # epoch 0: the model before any training
  assert curves["D1cons QA1"].get_ydata()[-1] == 0.8
  assert list(curves["chance"].get_ydata()) == [0.5, 0.5]
  stage_names = {text.get_text(): text.get_position()[0] for text in axis.texts}
  assert stage_names == {"stage1": 2.0, "stage2": 5.0}  # over the middle of each stage's epochs
  boundaries = [line.get_xdata()[0] for line in axis.get_lines() if line.get_linestyle() == ":"]
  assert boundaries == [4]
  plots.plt.close("all")


def test_a_task_without_a_chance_level_draws_none():
  axis = plots.subsets_figure(plots.curve_frame(Experiment.from_config(_config("define"))), _rows()).axes[0]
  assert "chance" not in {line.get_label() for line in axis.get_lines()}
  plots.plt.close("all")


def test_sweep_figures_are_named_by_their_settings():
  assert sweep_report.setting_plot_name("em", {}) == "em_all_runs.png"
  assert (
    sweep_report.setting_plot_name("em", {"stages.stage1.batch_size": 32, "model.init_from": "EleutherAI/x y"})
    == "em_stages.stage1.batch_size=32__model.init_from=EleutherAI-x-y.png"
  )


def _title_inside(figure) -> bool:
  figure.canvas.draw()
  renderer = figure.canvas.get_renderer()
  title = figure.axes[0].title.get_window_extent(renderer)
  return title.x0 >= 0 and title.x1 <= figure.bbox.x1 and title.y1 <= figure.bbox.y1


def test_a_long_probe_title_fits_a_one_layer_heat_map(monkeypatch, tmp_path):
  import numpy as np

  drawn = []
  monkeypatch.setattr(plots, "save_figure", lambda figure, path: drawn.append(figure))
  classes = ["ent_assoc_name_qd1consis", "ent_assoc_name_qd2incons"]
  plots.plot_probe_accuracy(np.full((6, 1), 0.7), list("abcdef"), classes, str(tmp_path / "p.png"))
  assert _title_inside(drawn[0])
  assert drawn[0].axes[0].get_title().replace("\n", " ") == f"probe accuracy: {classes[0]} vs {classes[1]}"


def test_a_long_run_title_fits_the_figure():
  frame = plots.curve_frame(Experiment.from_config(_config()))
  figure = plots.subsets_figure(frame, _rows(), title="learning_rate=0.003,stages.stage2.trainable=alias_embeddings")
  assert _title_inside(figure)
