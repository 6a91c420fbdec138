import csv
import functools
import glob
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from iml_jax import experiment, train
from iml_jax.models import from_config
from iml_jax.specs import Experiment
from iml_jax.checkpointing import StageCheckpoints
from iml_jax.errors import IMLError
from test_writers import read_events
import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def load_config(path, arg=None):
  return experiment.load_config(f"{path}:{arg}" if arg else path)


def tiny_config(**changes):
  config = load_config(os.path.join(ROOT, "configs", "default.py"), "tiny")
  config.progress_bar = False
  config.update(changes)
  return config


def main(workdir, *overrides, config="configs/default.py:tiny"):
  return subprocess.run(
    [
      sys.executable,
      "-m",
      "iml_jax.main",
      f"--config={config}",
      f"--workdir={workdir}",
      "--config.progress_bar=False",
      *overrides,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_loads_and_validates(path):
  config = load_config(path)
  Experiment.from_config(config)
  assert "Command:" in open(path).read()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("e2e")
  result = main(workdir)
  assert result.returncode == 0, result.stderr
  return workdir, result


def test_end_to_end_through_main(finished_run):
  workdir, result = finished_run
  for name in (
    "config.json",
    "metrics.jsonl",
    "results.csv",
    "summary.json",
    "plots/em_per_subset.png",
    "plots/em_per_subset_pooled.png",
    "seed_0/tokenizer.json",
    "seed_1/s2seed_0/stage2/predictions.jsonl",
  ):
    assert os.path.exists(workdir / name), name
  assert glob.glob(str(workdir / "tensorboard" / "seed_0" / "stage1" / "events.out.tfevents.*"))
  rows = list(csv.DictReader(open(workdir / "results.csv")))
  assert set(rows[0]) == {"seed", "seed_stage2", "stage", "epoch", "global_epoch", "subset", "em", "f1"}
  assert {r["stage"] for r in rows} == {"stage1", "stage2"} and {r["seed"] for r in rows} == {"0", "1"}
  # the first stage is evaluated before training (the curves' first point); a later stage starts where it ended
  assert min(int(r["epoch"]) for r in rows if r["stage"] == "stage1") == 0
  assert min(int(r["epoch"]) for r in rows if r["stage"] == "stage2") == 1
  summary = json.load(open(workdir / "summary.json"))
  assert set(summary["subsets"]) == {"qd1consis", "qd2incons", "d1consis", "d2consis"}
  gap = summary["iml_gap"]
  assert gap["mean"] == pytest.approx(summary["subsets"]["d1consis"]["em"] - summary["subsets"]["d2consis"]["em"])
  assert "IML gap EM(d1consis) - EM(d2consis)" in result.stdout
  for directory in ("seed_0/stage1", "seed_0/s2seed_0/stage2", "seed_1/stage1", "seed_1/s2seed_0/stage2"):
    assert os.path.exists(workdir / directory / "DONE")


def test_a_seed_after_another_gets_the_results_it_gets_alone(finished_run, tmp_path, monkeypatch):
  """Seed 1 of the two-seed run trained with the programs seed 0 compiled (stage.ProgramCache); here it runs
  on programs of its own."""
  workdir, _ = finished_run
  experiment.run(tiny_config(seed=1, n_seeds=1), str(tmp_path))
  for name in ("stage1/eval.jsonl", "s2seed_0/stage2/eval.jsonl", "s2seed_0/stage2/predictions.jsonl"):
    assert (workdir / "seed_1" / name).read_text() == (tmp_path / "seed_1" / name).read_text(), name


def test_learning_rate_and_throughput_are_logged(finished_run):
  """train/lr is the rate each logged step used (metrics.jsonl and TensorBoard); tokens/s only in TensorBoard:
  metrics.jsonl holds only what a rerun reproduces."""
  workdir, _ = finished_run
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  config = tiny_config()
  for label, name in (("seed_0/stage1", "stage1"), ("seed_1/s2seed_0/stage2", "stage2")):
    logged = [(r["step"], r["train/lr"]) for r in records if r["run"] == label and "train/loss" in r]
    schedule = train.learning_rate_schedule(config.stages[name].optimizer, max(step for step, _ in logged))
    assert [lr for _, lr in logged] == pytest.approx([float(schedule(step - 1)) for step, _ in logged], rel=1e-6)
    assert logged[0][1] > 0
  assert not any(key.startswith("perf/") for r in records for key in r)
  (events,) = glob.glob(str(workdir / "tensorboard" / "seed_0" / "stage1" / "events.out.tfevents.*"))
  rates = [v.simple_value for e in read_events(events) for v in e.summary.value if v.tag == "perf/tokens_per_s"]
  assert rates and min(rates) > 0


def test_without_the_progress_bar_each_log_and_evaluation_prints_a_line(finished_run):
  """A batch job's log: the logged steps with their loss, rate and pace, and each evaluation with its time."""
  workdir, result = finished_run
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  label = "seed_1/s2seed_0/stage2"
  logged = [r for r in records if r["run"] == label and "train/loss" in r]
  steps = re.findall(
    rf"^{label}: step (\d+)/(\d+), epoch [0-9.]+, loss ([0-9.]+), lr \S+, ([0-9,]+) tokens/s$", result.stdout, re.M
  )
  assert [(int(step), loss) for step, _, loss, _ in steps] == [(r["step"], f"{r['train/loss']:.4f}") for r in logged]
  assert {int(total) for _, total, _, _ in steps} == {logged[-1]["step"]}
  assert all(int(rate.replace(",", "")) > 0 for *_, rate in steps)
  evaluations = re.findall(
    rf"^{label}: evaluated at epoch (\d+) in [0-9.]+ s \(([0-9,]+) examples, ", result.stdout, re.M
  )
  evaluated = sorted({json.loads(line)["epoch"] for line in open(workdir / label / "eval.jsonl")})
  predictions = sum(1 for _ in open(workdir / label / "predictions.jsonl"))
  assert [(int(epoch), int(n.replace(",", ""))) for epoch, n in evaluations] == [(e, predictions) for e in evaluated]


def test_every_output_gets_the_mode_the_umask_gives(finished_run):
  """One policy for results, markers, logs, plots and checkpoints alike: what an ordinary open gives."""
  workdir, _ = finished_run
  umask = os.umask(0)
  os.umask(umask)
  modes = {
    os.path.relpath(os.path.join(folder, name), workdir): os.stat(os.path.join(folder, name)).st_mode & 0o777
    for folder, dirs, files in os.walk(workdir)
    for name in files + dirs
  }
  expected = {path: (0o777 if os.path.isdir(workdir / path) else 0o666) & ~umask for path in modes}
  assert modes == expected
  assert "results.csv" in modes and "seed_0/stage1/DONE" in modes


def test_rerun_skips_finished_work(finished_run):
  workdir, _ = finished_run
  before = {p: os.path.getmtime(p) for p in glob.glob(str(workdir / "seed_*" / "**" / "DONE"), recursive=True)}
  result = main(workdir, "--config.progress_bar=True")
  assert result.returncode == 0, result.stderr
  assert before == {p: os.path.getmtime(p) for p in before}
  assert "seed 2/2, stage 2/2 (seed_1/s2seed_0/stage2): 100%" in result.stderr  # the run's own progress line


def _final_params(workdir, directory):
  return StageCheckpoints(os.path.join(workdir, directory, "checkpoints"))


def test_stage_handoff_uses_final_params_and_a_fresh_optimizer(tmp_path, monkeypatch):
  created = []
  original = train.create_state

  def recording_create_state(model, optimizer, abstract, rng, params=None, initializer=None):
    state = original(model, optimizer, abstract, rng, params, initializer)
    # Copies: the train step donates (and so deletes) these buffers.
    created.append((jax.device_get(params), jax.device_get(state), abstract))
    return state

  monkeypatch.setattr(train, "create_state", recording_create_state)
  config = tiny_config(n_seeds=1)
  experiment.run(config, str(tmp_path))
  (stage1_init, _, _), (stage2_init, stage2_state, abstract) = created
  assert stage1_init is None
  checkpoints = StageCheckpoints(str(tmp_path / "seed_0" / "stage1" / "checkpoints"))
  final_step = json.load(open(tmp_path / "seed_0" / "stage1" / "DONE"))["step"]
  assert checkpoints.latest_step() == final_step
  stage1_final = checkpoints.restore_params(final_step, abstract.params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), stage2_init, stage1_final)
  assert int(stage2_state.step) == 0
  is_adam = lambda s: isinstance(s, optax.ScaleByAdamState)
  adam = [s for s in jax.tree.leaves(stage2_state.opt_state, is_leaf=is_adam) if is_adam(s)]
  assert adam and all(float(np.abs(np.asarray(m)).sum()) == 0 for s in adam for m in jax.tree.leaves(s.mu))
  counts = [int(x) for x in jax.tree.leaves(stage2_state.opt_state) if np.asarray(x).ndim == 0]
  assert counts and all(c == 0 for c in counts)


class _Preempted(Exception):
  pass


# slow (48 s with the suite running; CI resumes a real SIGKILLed run in test_faults): run with `-m slow`
@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
  config = tiny_config(n_seeds=1)
  config.checkpoint.every_steps = 3
  experiment.run(config, str(tmp_path / "straight"))

  original_save = StageCheckpoints.save
  calls = []

  def save_then_die(self, step, *args):
    original_save(self, step, *args)
    calls.append(step)
    if len(calls) == 2:  # mid stage 1, after its second periodic checkpoint (step 6 of 8)
      raise _Preempted()

  monkeypatch.setattr(StageCheckpoints, "save", save_then_die)
  with pytest.raises(_Preempted):
    experiment.run(config, str(tmp_path / "resumed"))
  monkeypatch.setattr(StageCheckpoints, "save", original_save)
  assert not os.path.exists(tmp_path / "resumed" / "seed_0" / "stage1" / "DONE")
  experiment.run(config, str(tmp_path / "resumed"))
  for name in ("results.csv", "summary.json", "seed_0/s2seed_0/stage2/predictions.jsonl"):
    assert open(tmp_path / "straight" / name).read() == open(tmp_path / "resumed" / name).read(), name


def test_bad_fractions_exit_with_one_line_and_write_nothing(tmp_path):
  result = main(tmp_path / "w", "--config.data.fractions.q=0.3")
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("iml_jax: error: config fields data.fractions.* sum to 1.3")
  assert not os.path.exists(tmp_path / "w")


BAD_VALUES = [
  ("stages.stage1.train_subset", "bogus", "stages.stage1.train_subset = 'bogus'"),
  ("model.name", "bert", "model.name = 'bert'"),
  ("stages.stage2.trainable", "some", "stages.stage2.trainable = 'some'"),
  ("data.fractions.d1consis", -0.1, "data.fractions.d1consis = -0.1"),
  ("stages.stage1.batch_size", 0, "stages.stage1.batch_size = 0: expected >= 1"),
  ("wandb.mode", "cloud", "wandb.mode = 'cloud': expected 'online', 'offline' or 'disabled'"),
  ("model.vocab_multiple", 0, "model.vocab_multiple = 0: expected an integer >= 1"),
]


@pytest.mark.parametrize("field, value, message", BAD_VALUES)
def test_bad_config_values_are_refused_naming_the_field(field, value, message):
  config = load_config(os.path.join(ROOT, "configs", "default.py"), "tiny")
  with config.unlocked():
    parent, _, leaf = field.rpartition(".")
    setattr(functools.reduce(getattr, parent.split("."), config), leaf, value)
  with pytest.raises(IMLError, match=re.escape(message)):
    Experiment.from_config(config)


@pytest.mark.parametrize(
  "override, message",
  [
    (("--config.wandb.mode=cloud",), BAD_VALUES[5][2]),
    (("--config.stages.stage1.batch_size=30",), "stages.stage1.batch_size = 30 (micro-batch 30) is not divisible"),
    (
      ("--config.mesh.shape=(1,1,-1)", "--config.mesh.rules=fsdp_tensor"),
      "its vocab dimension (195) is split over mesh axes ('tensor',) = 8 devices, which does not divide it; "
      "raise model.vocab_multiple",
    ),
  ],
)
def test_bad_config_values_end_main_with_one_line(tmp_path, override, message):
  """Through the command line: one `iml_jax: error` line naming the field, exit status 2."""
  result = main(tmp_path / "w", *override)
  assert result.returncode == 2 and message in result.stderr, result.stderr
  assert len([line for line in result.stderr.splitlines() if line.startswith("iml_jax: error")]) == 1


def test_workdir_of_another_config_is_refused_untouched(finished_run):
  workdir, _ = finished_run
  summary = open(workdir / "summary.json").read()
  result = main(workdir, "--config.stages.stage1.epochs=3")
  assert result.returncode == 2
  assert "differing fields: stages.stage1.epochs (2 -> 3)" in result.stderr
  assert open(workdir / "summary.json").read() == summary


def test_nan_loss_stops_without_saving(tmp_path):
  result = main(tmp_path, "--config.stages.stage1.optimizer.lr=1e30", "--config.log_every=1")
  assert result.returncode == 2
  assert "training loss is nan" in result.stderr.lower()
  assert "stages.stage1.optimizer.lr" in result.stderr
  assert os.listdir(tmp_path) == []  # failed before its first checkpoint in a fresh workdir: nothing blocks a rerun


def test_malformed_cvdb_file(tmp_path):
  bad = tmp_path / "cvdb.csv"
  bad.write_text("name,birth\nX,1900\n")
  result = main(
    tmp_path / "w",
    f"--config.data.cvdb_path={bad}",
    "--config.data.knowledge_base=cvdb",
    config="configs/define_synthetic.py:tiny",
  )
  assert result.returncode == 2
  assert f"CVDB file {bad}: missing column(s) death" in result.stderr


def test_stage_names_must_name_configured_stages():
  config = tiny_config()
  config.stage_names = ("stage1", "stage3")
  with pytest.raises(IMLError, match="stage_names names 'stage3', but stages has only"):
    Experiment.from_config(config)


@pytest.mark.parametrize(
  "multiple, tensor, expected", [(1, 1, 1135), (1, 2, 1136), (128, 1, 1152), (128, 8, 1152), (3, 2, 1140)]
)
def test_vocabulary_is_padded_to_the_multiple_and_the_tensor_axis(multiple, tensor, expected):
  config = tiny_config()
  config.model.vocab_multiple, config.mesh.shape = multiple, (-1, 1, tensor)

  class Tokenizer:
    vocab_size = 1135

  spec = Experiment.from_config(config)
  cfg = from_config.model_config(spec.model, spec.data, spec.mesh, Tokenizer(), None, None)
  assert cfg.vocab_size == expected and cfg.valid_vocab == (1135 if expected != 1135 else 0)


def test_allow_config_change_extends_a_finished_run(finished_run, tmp_path, capsys):
  import shutil

  workdir, _ = finished_run
  config = tiny_config()
  shutil.copytree(workdir, tmp_path / "w")
  done = open(tmp_path / "w" / "seed_0" / "stage1" / "DONE").read()
  done_time = os.path.getmtime(tmp_path / "w" / "seed_0" / "stage1" / "DONE")
  more_seeds = tiny_config(n_seeds=config.n_seeds + 1)
  summary = experiment.run(more_seeds, str(tmp_path / "w"), allow_config_change=True)
  expected = f"continuing with a changed config (n_seeds ({config.n_seeds} -> {config.n_seeds + 1}))"
  assert expected in capsys.readouterr().out
  assert summary["n_seeds"] == config.n_seeds + 1
  assert os.path.getmtime(tmp_path / "w" / "seed_0" / "stage1" / "DONE") == done_time  # not trained again
  assert open(tmp_path / "w" / "seed_0" / "stage1" / "DONE").read() == done
  assert json.load(open(tmp_path / "w" / "config.json"))["n_seeds"] == config.n_seeds + 1


_MESH_OUTPUTS = (
  "results.csv",
  "summary.json",
  "seed_0/stage1/predictions.jsonl",
  "seed_0/s2seed_0/stage2/predictions.jsonl",
)


def _outputs_on_mesh(workdir, rules: str, shape: tuple) -> dict:
  config = tiny_config(n_seeds=1)
  config.mesh.update(shape=shape, rules=rules)
  experiment.run(config, str(workdir))
  return {f: (workdir / f).read_bytes() for f in _MESH_OUTPUTS}


@pytest.mark.slow
def test_padding_the_vocabulary_for_the_tensor_axis_changes_no_result(tmp_path):
  """fsdp_tensor (1, 4, 2) pads the tiny vocabulary (195 -> 196 rows); the padding changes neither the parameters'
  draw nor any softmax, so the outputs equal those of the unpadded dp mesh byte for byte."""
  assert _outputs_on_mesh(tmp_path / "fsdp_tensor", "fsdp_tensor", (1, 4, 2)) == _outputs_on_mesh(
    tmp_path / "dp", "dp", (-1, 1, 1)
  )


@pytest.mark.slow
def test_one_config_gives_byte_identical_results_on_any_mesh(tmp_path):
  """One device (`main` in a process without the fake devices), and 8 devices as dp, fsdp and fsdp_tensor."""
  env = {**os.environ, "XLA_FLAGS": xla_flags.for_tests(devices=1)}
  one_device = subprocess.run(
    [
      sys.executable,
      "-m",
      "iml_jax.main",
      "--config=configs/default.py:tiny",
      f"--workdir={tmp_path / 'one'}",
      "--config.progress_bar=False",
      "--config.n_seeds=1",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert one_device.returncode == 0, one_device.stderr
  assert "1 local cpu devices of 1" in one_device.stdout
  expected = {f: (tmp_path / "one" / f).read_bytes() for f in _MESH_OUTPUTS}
  for rules, shape in {"dp": (-1, 1, 1), "fsdp": (1, -1, 1), "fsdp_tensor": (1, 4, 2)}.items():
    assert _outputs_on_mesh(tmp_path / rules, rules, shape) == expected, rules
