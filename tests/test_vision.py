"""Vision IML data (digit-grid aliases, A/B entities, tag bands, QA boxes), the ConvNet, a tiny run."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from iml_jax import config_blocks as blocks
from iml_jax.data import vision
from iml_jax.errors import IMLError
from iml_jax.models import registry
from test_experiment import ROOT


@pytest.fixture(scope="module")
def task():
  return vision.VisionTask(blocks.vision_data(num_aliases=40), seed=1, seed_stage2=0)


def _frame(image, cell, task):
  """The pixels of the 1-pixel frame around `cell`."""
  size = task.images.shape[1] + 2
  top, left = vision.BAND + (cell // 3) * size, (cell % 3) * size
  block = image[top : top + size, left : left + size]
  return np.concatenate([block[0], block[-1], block[:, 0], block[:, -1]])


def test_qa_highlights_exactly_one_cell_and_asks_its_letter(task):
  data = task.stage_data("stage1")
  for ex in data.evals["qd1consis"][:30] + data.evals["train_questions_qd2incons"][:30]:
    image = task.render(ex)
    boxed = [cell for cell in range(9) if np.all(_frame(image, cell, task) == 1.0)]
    assert boxed == [ex.cell] and not image[: vision.BAND].any()  # one box, no tag band
    assert ex.target[ex.cell] == task.entity[ex.alias][ex.cell]
    assert [t for c, t in enumerate(ex.target) if c != ex.cell] == [vision.BLANK] * 8


def test_definitions_carry_their_tag_and_entity(task):
  data = task.stage_data("full")
  bands = {}
  for subset, (tag, consistent) in vision.DEFINED_SUBSETS.items():
    for ex in data.evals.get(f"train_defs_{subset}", []):
      image = task.render(ex)
      assert ex.tag == tag and all(not np.all(_frame(image, c, task) == 1.0) for c in range(9))
      bands.setdefault(tag, set()).add(image[: vision.BAND].tobytes())
      assert (ex.target == task.entity[ex.alias]) == consistent  # qd2incons: another alias's entity
  assert {len(v) for v in bands.values()} == {1} and len({b for v in bands.values() for b in v}) == len(bands)
  defined = sorted(task.defined_entity[a] for a in task.subsets["qd2incons"])
  assert defined == sorted(task.entity[a] for a in task.subsets["qd2incons"])  # a derangement


def test_subsets_cells_and_held_out_handwriting(task):
  data = task.stage_data("stage1")
  assert [len(task.subsets[s]) for s in vision.SUBSETS] == [16, 16, 0, 4, 4, 0]
  assert len(data.train) == 32 * 6 + 32
  assert len(data.evals["qd1consis"]) == 16 * 3 and len(data.evals["d1consis"]) == 4 * 9
  train_pool = set(np.concatenate(task.pools["train"]).tolist())
  test_pool = set(np.concatenate(task.pools["test"]).tolist())
  assert not train_pool & test_pool and len(train_pool) + len(test_pool) == len(task.images)
  stage2 = task.stage_data("stage2")
  assert {ex.tag for ex in stage2.train} == {1, 2} and len(stage2.train) == 8


def test_deterministic_encoding(task):
  again = vision.VisionTask(blocks.vision_data(num_aliases=40), seed=1, seed_stage2=0)
  examples = task.stage_data("full").train[:20]
  first, second = task.encode(examples), again.encode(examples)
  for key in first:
    np.testing.assert_array_equal(first[key], second[key])
  assert first["inputs"].shape == (20,) + vision.image_shape(task.spec) + (1,)


def test_convnet_outputs_a_class_per_cell():
  model = registry.build(registry.make_config("convnet", image_height=33, image_width=30, features=(4, 8), hidden=16))
  params = registry.unbox(registry.init_params(model, jax.random.key(0)))
  batch = {"inputs": np.zeros((2, 33, 30, 1), np.float32), "targets": np.array([[0] * 9, [2] * 9], np.int32)}
  losses = registry.token_losses(model, params, batch)
  assert losses.shape == (2, 9) and np.all(np.isfinite(losses))


def test_mnist_without_tensorflow_datasets_is_a_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
  vision.load_digits.cache_clear()
  with pytest.raises(IMLError, match="data.digits = 'mnist' needs tensorflow-datasets"):
    vision.load_digits("mnist")
  with pytest.raises(IMLError, match="data.digits = 'usps'"):
    vision.check_config(blocks.vision_data(digits="usps"))


def test_tiny_run_through_main(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "iml_jax.main", "--config=configs/vision.py:tiny", f"--workdir={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr
  summary = json.load(open(tmp_path / "summary.json"))
  assert {"d1consis", "d2consis", "qd1consis"} <= set(summary["subsets"])
  record = json.loads(open(tmp_path / "seed_0" / "s2seed_0" / "stage2" / "predictions.jsonl").readline())
  assert set(record) == {"subset", "alias", "tag", "cell", "answer", "prediction"} and len(record["prediction"]) == 9


def test_same_images_in_every_process():
  code = (
    "import hashlib; from iml_jax import config_blocks as blocks; from iml_jax.data import vision; "
    "t = vision.VisionTask(blocks.vision_data(num_aliases=40), 1, 0); d = t.stage_data('full'); "
    "print(hashlib.sha256(t.encode(d.train + d.evals['d1consis'])['inputs'].tobytes()).hexdigest())"
  )
  digests = {
    subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      cwd=ROOT,
      env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
    ).stdout
    for seed in ("1", "2")
  }
  assert len(digests) == 1 and len(next(iter(digests)).strip()) == 64
