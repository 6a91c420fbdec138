"""Metric writers: JSONL, TensorBoard event files a reader can parse, optional W&B through its API."""

import glob
import json
import struct
import subprocess
import sys
import types


import pytest
from tensorboardX.proto import event_pb2

from iml_jax.errors import IMLError
from iml_jax.specs import Wandb
from iml_jax.writers import MetricWriter


def read_events(path: str) -> list:
  """TFRecord framing: length (u64), its CRC (u32), the Event proto, its CRC (u32)."""
  events, data = [], open(path, "rb").read()
  offset = 0
  while offset < len(data):
    (length,) = struct.unpack("<Q", data[offset : offset + 8])
    event = event_pb2.Event()
    event.ParseFromString(data[offset + 12 : offset + 12 + length])
    events.append(event)
    offset += 12 + length + 4
  return events


def test_jsonl_and_tensorboard_scalars_with_hparams(tmp_path):
  writer = MetricWriter(str(tmp_path), hparams={"stages.stage1.optimizer.lr": 0.003, "seed": 0})
  writer.write("seed_0/stage1", 10, {"train/loss": 2.5}, epoch=1.0)
  writer.write("seed_0/stage1", 20, {"train/loss": 1.25, "eval/d1consis_EM": 0.5})
  writer.close()
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert records[0] == {"run": "seed_0/stage1", "step": 10, "epoch": 1.0, "train/loss": 2.5}
  (path,) = glob.glob(str(tmp_path / "tensorboard" / "seed_0" / "stage1" / "events.out.tfevents.*"))
  scalars = [
    (e.step, v.tag, v.simple_value) for e in read_events(path) for v in e.summary.value if v.HasField("simple_value")
  ]
  assert scalars == [(10, "train/loss", 2.5), (20, "train/loss", 1.25), (20, "eval/d1consis_EM", 0.5)]
  texts = [v for e in read_events(path) for v in e.summary.value if v.tag.startswith("hparams")]
  assert texts and b"stages.stage1.optimizer.lr | 0.003" in texts[0].tensor.string_val[0]


def test_a_resumed_run_logs_each_step_once(tmp_path):
  """A process killed after logging step 30 resumes from its step-20 checkpoint: steps past 20 of that run are
  dropped from metrics.jsonl and purged from TensorBoard (a SessionLog START at step 21); other runs stay."""
  first = MetricWriter(str(tmp_path))
  for step in (10, 20, 30):
    first.write("seed_0/stage1", step, {"train/loss": 1.0 / step})
  first.write("seed_1/stage1", 30, {"train/loss": 0.5})
  first.close()
  resumed = MetricWriter(str(tmp_path))
  resumed.restart("seed_0/stage1", 20)
  resumed.write("seed_0/stage1", 30, {"train/loss": 0.25})
  resumed.close()
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [(r["run"], r["step"], r["train/loss"]) for r in records] == [
    ("seed_0/stage1", 10, 0.1),
    ("seed_0/stage1", 20, 0.05),
    ("seed_1/stage1", 30, 0.5),
    ("seed_0/stage1", 30, 0.25),
  ]
  latest = sorted(glob.glob(str(tmp_path / "tensorboard" / "seed_0" / "stage1" / "events.out.tfevents.*")))[-1]
  purges = [e.step for e in read_events(latest) if e.HasField("session_log") and e.session_log.status == 1]
  assert purges == [21]
  (tmp_path / "fresh").mkdir()
  fresh = MetricWriter(str(tmp_path / "fresh"))
  fresh.restart("seed_0/stage1", 0)  # nothing logged before: no purge marker in a first run's events
  fresh.write("seed_0/stage1", 0, {"eval/d1consis_EM": 0.5})
  fresh.write("seed_0/stage1", 10, {"train/loss": 1.0})
  fresh.close()
  (path,) = glob.glob(str(tmp_path / "fresh" / "tensorboard" / "seed_0" / "stage1" / "events.out.tfevents.*"))
  assert not any(e.HasField("session_log") for e in read_events(path))
  again = MetricWriter(str(tmp_path / "fresh"))
  again.restart("seed_0/stage1", 0)  # killed before its first checkpoint: everything it logged, step 0 included
  again.write("seed_0/stage1", 0, {"eval/d1consis_EM": 0.5})
  again.close()
  assert [json.loads(line)["step"] for line in open(tmp_path / "fresh" / "metrics.jsonl")] == [0]
  latest = sorted(glob.glob(str(tmp_path / "fresh" / "tensorboard" / "seed_0" / "stage1" / "events.out.tfevents.*")))
  assert [e.step for e in read_events(latest[-1]) if e.HasField("session_log") and e.session_log.status == 1] == [0]


def test_tensorboard_events_are_written_without_importing_torch(tmp_path):
  """tensorboardX would import torch (3-5 s per run) when it is installed; the writer keeps it out."""
  script = (
    f"from iml_jax.writers import MetricWriter; w = MetricWriter({str(tmp_path)!r}); "
    "w.write('run', 1, {'loss': 1.0}); w.close(); import sys; print('torch' in sys.modules)"
  )
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "False"
  assert glob.glob(str(tmp_path / "tensorboard" / "run" / "events.out.tfevents.*"))


def test_wandb_only_when_configured(tmp_path, monkeypatch):
  calls = []
  fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or fake_run)
  fake_run = types.SimpleNamespace(
    log=lambda values: calls.append(("log", values)), finish=lambda: calls.append(("finish",))
  )
  monkeypatch.setitem(sys.modules, "wandb", fake)
  (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
  off = MetricWriter(
    str(tmp_path / "a"),
    tensorboard=False,
    wandb_spec=Wandb(project="", entity="", mode="online"),
  )
  off.write("r", 1, {"x": 1.0})
  assert calls == []
  on = MetricWriter(
    str(tmp_path / "b"),
    tensorboard=False,
    hparams={"seed": 3},
    wandb_spec=Wandb(project="iml", entity="", mode="offline"),
  )
  on.write("seed_3/stage1", 5, {"train/loss": 0.5})
  on.close()
  (_, init), log, finish = calls
  assert init["project"] == "iml" and init["mode"] == "offline" and init["config"] == {"seed": 3}
  assert init["resume"] == "allow" and len(init["id"]) == 16 and init["dir"] == str(tmp_path / "b")
  assert log == ("log", {"seed_3/stage1/train/loss": 0.5, "seed_3/stage1/step": 5}) and finish == ("finish",)


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
  with pytest.raises(IMLError, match=r"wandb.project = 'iml' needs the wandb package \(pip install wandb\)"):
    MetricWriter(str(tmp_path), wandb_spec=Wandb(project="iml", entity="", mode="online"))
