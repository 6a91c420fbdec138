"""The path layer behaves the same on a local disk and in a bucket (the stand-in GCS of tests/fake_gcs.py,
reached through the real gcsfs client); the end-to-end gs:// run with a kill is in test_preemption.py."""

import os

import pytest

from iml_jax import io_utils
from iml_jax.errors import IMLError


def test_write_read_list_and_remove(storage_root):
  io_utils.makedirs(storage_root)
  io_utils.atomic_write_json(f"{storage_root}/a/config.json", {"b": 1, "a": [2]})
  io_utils.atomic_write_bytes(f"{storage_root}/a/plot.png", b"\x89PNG\x00")
  assert io_utils.read_json(f"{storage_root}/a/config.json") == {"a": [2], "b": 1}
  assert io_utils.read_text(f"{storage_root}/a/config.json") == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
  assert io_utils.read_bytes(f"{storage_root}/a/plot.png") == b"\x89PNG\x00"
  assert io_utils.exists(f"{storage_root}/a/config.json") and not io_utils.exists(f"{storage_root}/a/nothing")
  assert io_utils.isdir(f"{storage_root}/a") and not io_utils.isdir(f"{storage_root}/a/config.json")
  assert io_utils.listdir(f"{storage_root}/a") == ["config.json", "plot.png"]  # no temporary files left beside them
  assert io_utils.listdir(f"{storage_root}/missing") == []
  with io_utils.open_text(f"{storage_root}/a/config.json") as handle:
    assert handle.readline() == "{\n"
  io_utils.rmtree(f"{storage_root}/a")
  assert not io_utils.exists(f"{storage_root}/a/config.json") and io_utils.listdir(f"{storage_root}/a") == []
  io_utils.rmtree(f"{storage_root}/a")  # removing what is gone is no error


def test_jsonl_appends_whole_lines_and_drops_a_line_a_kill_cut_short(storage_root):
  path = f"{storage_root}/eval.jsonl"
  assert io_utils.read_jsonl(path) == []
  io_utils.append_jsonl(path, [{"epoch": 1}, {"epoch": 2}])
  io_utils.atomic_write_bytes(path, io_utils.read_bytes(path) + b'{"epoch": 3, "em"')  # a kill mid-append
  assert io_utils.read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
  io_utils.append_jsonl(path, [{"epoch": 3}])
  assert io_utils.read_text(path) == '{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n'
  io_utils.atomic_write_text(path, '{"epoch": 1}\n{"ep\n{"epoch": 3}\n')
  with pytest.raises(IMLError, match=r"eval.jsonl, line 2: not valid JSON"):
    io_utils.read_jsonl(path)


def test_dropping_jsonl_records_rewrites_only_when_something_goes(storage_root):
  path = f"{storage_root}/metrics.jsonl"
  io_utils.append_jsonl(path, [{"step": 1}, {"step": 2}, {"step": 3}])
  io_utils.atomic_write_bytes(path, io_utils.read_bytes(path) + b'{"step": 4, "lo')  # a kill mid-append
  assert io_utils.drop_jsonl_records(path, lambda record: record["step"] > 1)
  assert io_utils.read_text(path) == '{"step": 1}\n'
  assert not io_utils.drop_jsonl_records(path, lambda record: record["step"] > 1)
  assert not io_utils.drop_jsonl_records(f"{storage_root}/absent.jsonl", lambda record: True)
  assert not io_utils.exists(f"{storage_root}/absent.jsonl")


def test_read_json_names_a_file_that_is_not_json(storage_root):
  io_utils.atomic_write_text(f"{storage_root}/DONE", "{half")
  with pytest.raises(IMLError, match=r"DONE is not valid JSON"):
    io_utils.read_json(f"{storage_root}/DONE")


def test_a_bucket_object_is_written_in_one_upload_without_temporary_objects(gcs):
  before = len(gcs.requests)
  io_utils.atomic_write_text("gs://bucket/one/summary.json", "{}\n")
  uploads = [path for method, path in gcs.requests[before:] if method in ("POST", "PUT")]
  assert gcs.names(prefix="one/") == ["one/summary.json"]
  assert not [path for path in uploads if "rewriteTo" in path or "copyTo" in path]  # no rename via copy


def test_a_bucket_whose_layout_cannot_be_read_costs_one_lookup(gcs, monkeypatch):
  from etils.epath import backend
  from gcsfs.extended_gcsfs import BucketType, ExtendedGcsFileSystem
  from google.api_core import exceptions

  lookups = []

  class NoLayoutPermission:
    """The Storage Control API as it answers a service account without the permission getStorageLayout needs."""

    async def get_storage_layout(self, name, **kwargs):
      lookups.append(name)
      raise exceptions.PermissionDenied(f"{name}: caller does not have storage.objects.list access")

  async def control_client():
    return NoLayoutPermission()

  filesystem = ExtendedGcsFileSystem(token="anon", skip_instance_cache=True)
  monkeypatch.setattr(filesystem, "_get_control_plane_client", control_client)
  monkeypatch.setattr(backend.fsspec_backend, "fs", lambda path: filesystem)
  root = "gs://bucket/layout"
  io_utils.atomic_write_json(f"{root}/config.json", {"a": 1})
  io_utils.append_jsonl(f"{root}/metrics.jsonl", [{"step": 1}])
  io_utils.append_jsonl(f"{root}/metrics.jsonl", [{"step": 2}])
  assert io_utils.read_json(f"{root}/config.json") == {"a": 1} and io_utils.listdir(root) == [
    "config.json",
    "metrics.jsonl",
  ]
  assert io_utils.read_jsonl(f"{root}/metrics.jsonl") == [{"step": 1}, {"step": 2}]
  io_utils.rmtree(root)
  assert not io_utils.exists(f"{root}/config.json")
  assert lookups == ["projects/_/buckets/bucket/storageLayout"]
  assert filesystem._storage_layout_cache == {"bucket": BucketType.NON_HIERARCHICAL}


def test_uris_stay_uris():
  assert io_utils.absolute("gs://bucket/run") == "gs://bucket/run"
  assert io_utils.absolute("run") == os.path.join(os.getcwd(), "run")
  assert io_utils.is_remote("gs://bucket/run") and not io_utils.is_remote("/tmp/run")


def test_unsupported_uris_and_missing_packages_are_one_line(monkeypatch):
  with pytest.raises(IMLError, match=r"s3://b/run: only local paths and gs:// URIs are supported"):
    io_utils.check_supported("s3://b/run")
  io_utils.check_supported("/tmp/run")
  import importlib.util

  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gcsfs" else real(name, *a))
  with pytest.raises(IMLError, match=r"gs://b/run: gs:// paths need gcsfs: pip install -e '\.\[gcs\]'"):
    io_utils.check_supported("gs://b/run")
