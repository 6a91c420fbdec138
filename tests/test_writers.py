"""Metric writers: JSONL, TensorBoard event files a reader can parse, optional W&B through its API."""
import glob
import json
import struct
import sys
import types

import ml_collections
import pytest
from tensorboardX.proto import event_pb2

from iml_jax.errors import IMLError
from iml_jax.writers import MetricWriter


def read_events(path: str) -> list:
  """TFRecord framing: length (u64), its CRC (u32), the Event proto, its CRC (u32)."""
  events, data = [], open(path, "rb").read()
  offset = 0
  while offset < len(data):
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    event = event_pb2.Event()
    event.ParseFromString(data[offset + 12:offset + 12 + length])
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
  scalars = [(e.step, v.tag, v.simple_value) for e in read_events(path) for v in e.summary.value
             if v.HasField("simple_value")]
  assert scalars == [(10, "train/loss", 2.5), (20, "train/loss", 1.25), (20, "eval/d1consis_EM", 0.5)]
  texts = [v for e in read_events(path) for v in e.summary.value if v.tag.startswith("hparams")]
  assert texts and b"stages.stage1.optimizer.lr | 0.003" in texts[0].tensor.string_val[0]


def test_wandb_only_when_configured(tmp_path, monkeypatch):
  calls = []
  fake = types.SimpleNamespace(init=lambda **kw: calls.append(("init", kw)) or fake_run)
  fake_run = types.SimpleNamespace(log=lambda values: calls.append(("log", values)),
                                   finish=lambda: calls.append(("finish",)))
  monkeypatch.setitem(sys.modules, "wandb", fake)
  (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
  off = MetricWriter(str(tmp_path / "a"), tensorboard=False,
                     wandb_cfg=ml_collections.ConfigDict(dict(project="", entity="", mode="online")))
  off.write("r", 1, {"x": 1.0})
  assert calls == []
  on = MetricWriter(str(tmp_path / "b"), tensorboard=False, hparams={"seed": 3},
                    wandb_cfg=ml_collections.ConfigDict(dict(project="iml", entity="", mode="offline")))
  on.write("seed_3/stage1", 5, {"train/loss": 0.5})
  on.close()
  (_, init), log, finish = calls
  assert init["project"] == "iml" and init["mode"] == "offline" and init["config"] == {"seed": 3}
  assert init["resume"] == "allow" and len(init["id"]) == 16 and init["dir"] == str(tmp_path / "b")
  assert log == ("log", {"seed_3/stage1/train/loss": 0.5, "seed_3/stage1/step": 5}) and finish == ("finish",)


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
  with pytest.raises(IMLError, match=r"wandb.project = 'iml' needs the wandb package \(pip install wandb\)"):
    MetricWriter(str(tmp_path), wandb_cfg=ml_collections.ConfigDict(dict(project="iml", entity="", mode="online")))
