"""Tests run on CPU with 8 fake devices, so nothing silently assumes a single device."""

import atexit
import os
import shutil
import tempfile

import pytest

import xla_flags

os.environ["XLA_FLAGS"] = xla_flags.for_tests(devices=8)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the whole run, its subprocesses (every `python -m iml_jax.main`) and
# xdist workers: the same tiny programs are compiled by dozens of tests. A compiled program is the same
# executable whether it came from the cache or not, so results do not change. New per run (nothing stale).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="iml-jax-test-xla-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def shared_per_module(fixture_name, config):
  """The scope of an expensive data fixture: shared by a module's tests, except under mutation testing
  (mutmut sets MUTANT_UNDER_TEST), where every test must build it again so that the test is linked to the
  code it exercises and a mutant reaches it."""
  del fixture_name, config
  return "function" if "MUTANT_UNDER_TEST" in os.environ else "module"


def pytest_collection_modifyitems(items):
  """Tests marked `first` start the run: with `-n 2` the longest test then runs beside the others, not alone at
  the end."""
  items.sort(key=lambda item: item.get_closest_marker("first") is None)


@pytest.fixture(scope="module")
def gcs():
  """A stand-in GCS (tests/fake_gcs.py) with one bucket, `bucket`, that every GCS client of this process and of
  its subprocesses (which inherit the environment) reaches instead of Google's servers."""
  from fake_gcs import FakeGCS

  server = FakeGCS(buckets=("bucket",))
  saved = {k: os.environ.get(k) for k in server.client_env()}
  os.environ.update(server.client_env())
  import fsspec
  import gcsfs

  fsspec.config.conf["gs"] = {"token": "anon"}  # fsspec read its FSSPEC_* variables when it was imported
  yield server
  gcsfs.GCSFileSystem.clear_instance_cache()  # instances remember this server's address
  fsspec.config.conf.pop("gs", None)
  for key, value in saved.items():
    if value is None:
      os.environ.pop(key)
    else:
      os.environ[key] = value
  server.close()


@pytest.fixture(params=["local", "bucket"])
def storage_root(request, tmp_path):
  """A directory on the local disk, then the same test again with a prefix in the stand-in bucket."""
  if request.param == "local":
    return str(tmp_path)
  request.getfixturevalue("gcs")
  return f"gs://bucket/{request.node.originalname}"
