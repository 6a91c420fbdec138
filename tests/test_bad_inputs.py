"""Bad inputs against a workdir that holds a finished run: one clear message, and every file left as it was."""

import hashlib
import os

import pytest

from iml_jax import experiment
from iml_jax.errors import IMLError
from test_experiment import tiny_config


def snapshot(workdir) -> dict:
  return {
    os.path.relpath(os.path.join(d, f), workdir): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
    for d, _, files in os.walk(workdir)
    for f in files
  }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("finished")
  experiment.run(tiny_config(n_seeds=1), str(workdir))
  return workdir, snapshot(workdir)


def _set(config, field, value):
  node = config
  *parents, leaf = field.split(".")
  for part in parents:
    node = node[part]
  node[leaf] = value


CASES = {
  "fractions not summing to 1": ({"data.fractions.q": 0.3}, "data.fractions"),
  "negative fraction": ({"data.fractions.d1consis": -0.1}, "data.fractions.d1consis = -0.1"),
  "zero seeds": ({"n_seeds": 0}, "n_seeds = 0"),
  "unknown stage in stage_names": ({"stage_names": ("stage1", "stage3")}, "stage_names names 'stage3'"),
  "zero epochs": ({"stages.stage1.epochs": 0}, "stages.stage1.epochs = 0: expected >= 1"),
  "zero batch size": ({"stages.stage2.batch_size": 0}, "stages.stage2.batch_size = 0: expected >= 1"),
  "batch not divisible by accumulation": (
    {"stages.stage1.grad_accum": 3},
    "stages.stage1.batch_size = 32 must be divisible by stages.stage1.grad_accum = 3",
  ),
  "batch not divisible by the devices": (
    {"stages.stage2.batch_size": 12, "mesh.shape": (8, 1, 1)},
    "stages.stage2.batch_size = 12 (micro-batch 12) is not divisible by the 8",
  ),
  "unknown optimizer": ({"stages.stage1.optimizer.name": "lion"}, "stages.stage1.optimizer.name = 'lion'"),
  "non-positive learning rate": ({"stages.stage1.optimizer.lr": 0.0}, "stages.stage1.optimizer.lr = 0.0: expected > 0"),
  "unknown train subset": ({"stages.stage1.train_subset": "everything"}, "stages.stage1.train_subset = 'everything'"),
  "unknown trainable": ({"stages.stage2.trainable": "head"}, "stages.stage2.trainable = 'head'"),
  "unknown task": ({"task": "trivia"}, "task = 'trivia'"),
  "unknown eval set": ({"eval.subsets": "d1consis,nope"}, "eval.subsets names unknown set 'nope'"),
  "unknown model": ({"model.name": "mamba"}, "model.name = 'mamba'"),
  "an array model for a text task": ({"model.name": "mlp"}, "model 'mlp' reads the arrays of another task"),
  "model field of another family": ({"model.d_kv": 8}, "do not apply to model.name = 'gpt_neox'"),
  "width not divisible by heads": ({"model.n_heads": 3}, "model.d_model = 16 must be divisible by model.n_heads = 3"),
  "unknown mesh rules": ({"mesh.rules": "zero3"}, "mesh.rules = 'zero3'"),
  "malformed mesh shape": ({"mesh.shape": (-1, -1, 1)}, "mesh.shape = (-1, -1, 1)"),
  "mesh larger than the devices": ({"mesh.shape": (16, 1, 1)}, "needs 16 devices; 8 are available"),
  "vocab_multiple below 1": ({"model.vocab_multiple": 0}, "model.vocab_multiple = 0"),
  "unknown W&B mode": ({"wandb.mode": "cloud"}, "wandb.mode = 'cloud'"),
  "alignment sets not four": (
    {"analysis.grad_alignment.sets": "d1consis,d2consis"},
    "analysis.grad_alignment.sets = 'd1consis,d2consis': expected 4",
  ),
  "negative seed": ({"seed": -1}, "seed = -1: expected an integer >= 0"),
  "log_every 0": ({"log_every": 0}, "log_every = 0: expected an integer >= 1"),
  "eval batch size 0": ({"eval.batch_size": 0}, "eval.batch_size = 0: expected an integer >= 1"),
  "no new tokens decoded": ({"eval.max_new_tokens": 0}, "eval.max_new_tokens = 0: expected an integer >= 1"),
  "negative checkpoints to keep": ({"checkpoint.max_to_keep": -1}, "max_to_keep = -1: expected an integer"),
  "negative checkpoint interval": ({"checkpoint.every_steps": -2}, "every_steps = -2: expected an integer"),
  "a different result-changing config in the same workdir": (
    {"stages.stage1.optimizer.lr": 0.01},
    "holds a run of a different config",
  ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_leaves_the_finished_run_untouched(finished, case):
  workdir, before = finished
  changes, message = CASES[case]
  config = tiny_config(n_seeds=1)
  for field, value in changes.items():
    _set(config, field, value)
  with pytest.raises(IMLError) as raised:
    experiment.run(config, str(workdir))
  assert message in str(raised.value) and "\n" not in str(raised.value)
  assert snapshot(workdir) == before


def test_unwritable_workdir(finished, tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(IMLError, match=f"workdir {blocker}/run cannot be created"):
    experiment.run(tiny_config(n_seeds=1), str(blocker / "run"))


def test_corrupted_tokenizer_of_a_finished_seed(finished, tmp_path):
  """A damaged input file of the finished run is reported, not silently rebuilt over."""
  import shutil

  workdir, _ = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  (copy / "seed_0" / "tokenizer.json").write_text("{not json")
  before = snapshot(copy)
  with pytest.raises(IMLError, match="tokenizer.json"):
    experiment.run(tiny_config(n_seeds=1), str(copy))
  assert snapshot(copy) == before


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("data.knowledge_base", "wikidata", "data.knowledge_base = 'wikidata'"),
    ("data.def_order", "xyz", "data.def_order = 'xyz'"),
  ],
)
def test_bad_define_fields(tmp_path, field, value, message):
  from test_experiment import ROOT, load_config

  config = load_config(os.path.join(ROOT, "configs", "define_synthetic.py"), "tiny")
  _set(config, field, value)
  with pytest.raises(IMLError, match=message):
    experiment.run(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "summary.json")


def _cut_last_line(path):
  lines = path.read_text().splitlines(keepends=True)
  path.write_text("".join(lines[:-1]))


STAGE2 = os.path.join("seed_0", "s2seed_0", "stage2")
DAMAGE = {  # what is done to a copy of the finished run -> the file the error names, and what it says
  "eval.jsonl cut by a line": (
    lambda w: _cut_last_line(w / STAGE2 / "eval.jsonl"),
    f"{STAGE2}/eval.jsonl differs from the file the stage finished with",
  ),
  "eval.jsonl deleted": (lambda w: os.remove(w / STAGE2 / "eval.jsonl"), f"{STAGE2}/eval.jsonl is missing"),
  "predictions.jsonl deleted": (
    lambda w: os.remove(w / "seed_0" / "stage1" / "predictions.jsonl"),
    "seed_0/stage1/predictions.jsonl is missing",
  ),
  "DONE emptied": (lambda w: (w / STAGE2 / "DONE").write_text(""), f"{STAGE2}/DONE is not a finished stage's record"),
  "DONE without a step": (
    lambda w: (w / STAGE2 / "DONE").write_text('{"epochs": 2}'),
    f"{STAGE2}/DONE is not a finished stage's record",
  ),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_finished_stage_is_named_never_reused(finished, tmp_path, case):
  """A rerun (and the report) refuses a finished stage whose results differ from what its DONE marker vouched for,
  naming the file and the directory to delete; nothing is written."""
  import shutil

  from iml_jax import report

  workdir, _ = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  damage, message = DAMAGE[case]
  damage(copy)
  before = snapshot(copy)
  for attempt in (lambda: experiment.run(tiny_config(n_seeds=1), str(copy)), lambda: report.report_workdir(str(copy))):
    with pytest.raises(IMLError) as raised:
      attempt()
    assert message in str(raised.value) and "Delete the directory" in str(raised.value)
    assert "\n" not in str(raised.value)
    assert snapshot(copy) == before


def test_deleting_the_damaged_stage_as_told_recomputes_the_same_results(finished, tmp_path):
  import shutil

  workdir, before = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  _cut_last_line(copy / STAGE2 / "eval.jsonl")
  shutil.rmtree(copy / STAGE2)
  experiment.run(tiny_config(n_seeds=1), str(copy))
  after = snapshot(copy)
  for name in ("results.csv", "summary.json", f"{STAGE2}/eval.jsonl", f"{STAGE2}/predictions.jsonl", f"{STAGE2}/DONE"):
    assert after[name] == before[name], name


def test_a_done_marker_naming_another_step_than_the_final_checkpoint_is_refused(finished, tmp_path):
  """Stage 2 is rerun from stage 1's final parameters: a stage-1 DONE naming an earlier step is damage."""
  import json
  import shutil

  workdir, _ = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  shutil.rmtree(copy / STAGE2)
  done_path = copy / "seed_0" / "stage1" / "DONE"
  done = json.loads(done_path.read_text())
  done_path.write_text(json.dumps(dict(done, step=done["step"] - 1)))
  with pytest.raises(IMLError, match="seed_0/stage1 is damaged: its marker .*DONE names step"):
    experiment.run(tiny_config(n_seeds=1), str(copy))


def test_a_run_ends_in_an_error_not_a_smaller_n_when_final_records_are_missing(finished, tmp_path):
  """A DONE marker from before digests were recorded cannot vouch for its eval.jsonl; a final record missing from
  it is still caught when the run's summary is formed, before the report is rewritten."""
  import json
  import shutil

  workdir, _ = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  done_path = copy / STAGE2 / "DONE"
  done_path.write_text(json.dumps({k: v for k, v in json.loads(done_path.read_text()).items() if k != "sha256"}))
  _cut_last_line(copy / STAGE2 / "eval.jsonl")
  before = snapshot(copy)
  with pytest.raises(IMLError, match=r"finished stages lack 1 final evaluation records \(seed_0/s2seed_0/stage2: "):
    experiment.run(tiny_config(n_seeds=1), str(copy))
  assert snapshot(copy) == before


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(finished, tmp_path):
  """A kill between an atomic write's temporary file and its rename (e.g. in the report) leaves `.tmp-*` files; the
  next run on the workdir removes them and changes nothing else."""
  import shutil

  workdir, before = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  strays = [copy / ".tmp-summary.jsonk3j2l1", copy / STAGE2 / ".tmp-eval.jsonlq9w8e7"]
  for stray in strays:
    stray.write_text('{"cut": ')
  experiment.run(tiny_config(n_seeds=1), str(copy))
  assert not any(stray.exists() for stray in strays)
  after = snapshot(copy)
  for name in ("results.csv", "summary.json", f"{STAGE2}/eval.jsonl", f"{STAGE2}/DONE"):
    assert after[name] == before[name], name


def test_a_flipped_bit_in_a_finished_stages_checkpoint_is_named_with_the_stage_to_delete(finished, tmp_path):
  """Stage 2 starts from stage 1's final checkpoint: one flipped bit there is damage, not a different model
  (deleting a damaged stage as told recomputes it identically: the test above)."""
  import shutil

  from test_checkpointing import _largest_file

  workdir, _ = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  shutil.rmtree(copy / STAGE2)
  victim = _largest_file(copy / "seed_0" / "stage1" / "checkpoints")
  data = bytearray(victim_bytes := open(victim, "rb").read())
  data[len(victim_bytes) // 2] ^= 1
  open(victim, "wb").write(bytes(data))
  with pytest.raises(
    IMLError,
    match=r"finished stage .*seed_0/stage1 is damaged: checkpoint file .*seed_0/stage1/"
    r"checkpoints/\d+/.* differs from the file saved. Delete the directory",
  ):
    experiment.run(tiny_config(n_seeds=1), str(copy))


def test_a_finished_stages_checkpoint_without_its_digests_is_refused_not_restored_unchecked(finished, tmp_path):
  """Nothing vouches for such a checkpoint (saved before digests were kept, or its digests deleted): stage 2,
  which starts from it, is refused naming the stage to delete; the finished checkpoint itself is kept."""
  import shutil

  workdir, _ = finished
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)
  shutil.rmtree(copy / STAGE2)
  checkpoints = copy / "seed_0" / "stage1" / "checkpoints"
  (digests,) = checkpoints.glob("*.sha256.json")
  digests.unlink()
  before = snapshot(copy)
  with pytest.raises(
    IMLError,
    match=r"^finished stage .*seed_0/stage1 is damaged: checkpoint .*seed_0/stage1/checkpoints/\d+ has no digest "
    r"file .*: its save did not finish, so it cannot be checked. Delete the directory .*seed_0/stage1 and rerun",
  ):
    experiment.run(tiny_config(n_seeds=1), str(copy))
  assert snapshot(copy) == before
