"""The one path layer: every file a run reads or writes goes through here, on a local disk or in a bucket.

A path is a local path or a URI (`gs://bucket/dir`), handled by etils.epath as Orbax handles it (gs:// via
gcsfs). The atomicity promise is the same for both — a kill never leaves a half-written file behind:
locally a file is written to a temporary name, synced and renamed over the target; in a bucket an object
becomes visible only when its upload completes, so the object is written in one upload and never renamed
(GCS has no atomic rename). Appends to JSONL are read-modify-write of the whole object there.
"""

import io
import json
import os
import shutil
import tempfile

from iml_jax.errors import IMLError

# Packages a gs:// path needs beyond the core install: epath's fsspec backend (gcsfs) for files, and Orbax's
# bucket check plus tensorboardX's event files (google-cloud-storage). TensorStore writes arrays itself.
GCS_PACKAGES = {"gcsfs": "gcsfs", "google.cloud.storage": "google-cloud-storage"}


def is_remote(path: str) -> bool:
  return "://" in str(path)


def absolute(path: str) -> str:
  """Local paths made absolute (Orbax requires it); a URI is already absolute and must not be touched
  (`os.path.abspath` would turn gs://b/x into a local directory named `gs:`)."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def check_supported(path: str) -> None:
  """One clear line when a URI cannot be served here: an unknown scheme, or gs:// without its packages."""
  if not is_remote(path):
    return
  scheme = str(path).split("://", 1)[0]
  if scheme != "gs":
    raise IMLError(f"{path}: only local paths and gs:// URIs are supported, not {scheme}://")
  import importlib.util  # pylint: disable=import-outside-toplevel

  missing = []
  for module, package in GCS_PACKAGES.items():
    try:
      if importlib.util.find_spec(module) is None:
        missing.append(package)
    except ModuleNotFoundError:
      missing.append(package)
  if missing:
    raise IMLError(
      f"{path}: gs:// paths need {', '.join(missing)}: pip install -e '.[gcs]' (the tpu extra includes it)"
    )


def _epath(path: str):
  from etils import epath  # pylint: disable=import-outside-toplevel

  _remember_bucket_layout(path)
  return epath.Path(path)


def _remember_bucket_layout(uri: str) -> None:
  """gcsfs's default filesystem (ExtendedGcsFileSystem, unless GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false) asks the
  Storage Control API for a bucket's layout (flat, hierarchical namespace, zonal) before most calls and keeps
  only an answer: after a failed look-up (no permission, no control API at a storage emulator) every later
  call asks again, each time through its retries. So each bucket is looked up once per filesystem here, and a
  failure is remembered as the flat layout that gcsfs falls back to for that call anyway."""
  from etils.epath import backend  # pylint: disable=import-outside-toplevel

  filesystem = backend.fsspec_backend.fs(uri)
  layouts = getattr(filesystem, "_storage_layout_cache", None)
  bucket = uri.split("://", 1)[1].split("/", 1)[0]
  if layouts is None or bucket in layouts:
    return
  from gcsfs.extended_gcsfs import BucketType  # pylint: disable=import-outside-toplevel

  if filesystem._sync_lookup_bucket_type(bucket) == BucketType.UNKNOWN:
    layouts[bucket] = BucketType.NON_HIERARCHICAL


def exists(path: str) -> bool:
  return _epath(path).exists() if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return _epath(path).is_dir() if is_remote(path) else os.path.isdir(path)


def listdir(path: str) -> list[str]:
  """Names in a directory, sorted; [] when it does not exist."""
  if not isdir(path):
    return []
  if is_remote(path):
    return sorted(child.name for child in _epath(path).iterdir())
  return sorted(os.listdir(path))


def makedirs(path: str) -> None:
  """Local directories are created; a bucket has no directories (objects create their prefixes)."""
  if not is_remote(path):
    os.makedirs(path, exist_ok=True)


def rmtree(path: str) -> None:
  if not exists(path):
    return
  if is_remote(path):
    _epath(path).rmtree()
  else:
    shutil.rmtree(path)


def remove(path: str) -> None:
  """Deletes one file."""
  if is_remote(path):
    _epath(path).unlink()
  else:
    os.remove(path)


def open_text(path: str, encoding: str = "utf-8"):
  """A text stream for reading a large file without holding it in memory (csv's newline handling)."""
  if is_remote(path):
    return io.TextIOWrapper(_epath(path).open("rb"), encoding=encoding, newline="")
  return open(path, newline="", encoding=encoding)


def read_bytes(path: str) -> bytes:
  if is_remote(path):
    return _epath(path).read_bytes()
  with open(path, "rb") as handle:
    return handle.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode("utf-8")


def read_json(path: str):
  """The JSON value in `path`; a file that is not JSON is one error naming it."""
  try:
    return json.loads(read_text(path))
  except (json.JSONDecodeError, UnicodeDecodeError) as err:
    raise IMLError(f"{path} is not valid JSON ({err})") from None


TEMPORARY_PREFIX = ".tmp-"  # a local atomic write's file before its rename; left behind only by a kill


def remove_temporaries(directory: str) -> None:
  """Deletes the temporary files that killed atomic writes left below a local `directory` (a bucket has none:
  its writes are single uploads). Only for a directory no other process writes to."""
  if is_remote(directory):
    return
  for folder, _, files in os.walk(directory):
    for name in files:
      if name.startswith(TEMPORARY_PREFIX):
        os.remove(os.path.join(folder, name))


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


# One mode policy for every output: what an ordinary open gives under the user's umask. mkstemp would make the
# files of atomic writes readable by their owner only.
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str, data: bytes) -> None:
  if is_remote(path):
    _epath(path).write_bytes(data)  # one upload: the object appears whole or not at all
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMPORARY_PREFIX + os.path.basename(path))
  try:
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
      handle.write(data)
      handle.flush()
      os.fsync(handle.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, value) -> None:
  atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _whole_lines(data: bytes) -> bytes:
  """`data` without a last line cut short by a kill."""
  return data if not data or data.endswith(b"\n") else data[: data.rfind(b"\n") + 1]


def append_jsonl(path: str, records: list[dict]) -> None:
  """Appends whole lines; a last line cut short by a kill is dropped first, so it never ends up mid-file."""
  new = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
  if is_remote(path):
    old = read_bytes(path) if exists(path) else b""
    atomic_write_bytes(path, _whole_lines(old) + new)
    return
  if os.path.exists(path):
    with open(path, "rb+") as handle:
      end = handle.seek(0, os.SEEK_END)
      handle.seek(max(end - 1, 0))
      if handle.read(1) not in (b"", b"\n"):  # the last byte tells; the whole file is read only after a kill
        handle.seek(0)
        handle.truncate(len(_whole_lines(handle.read())))
  with open(path, "ab") as handle:
    handle.write(new)
    handle.flush()
    os.fsync(handle.fileno())


def drop_jsonl_records(path: str, stale) -> bool:
  """Rewrites `path` atomically without its records for which `stale(record)` is true (and without a last line
  cut short by a kill); whether it dropped any."""
  records = read_jsonl(path)
  kept = [r for r in records if not stale(r)]
  if len(kept) == len(records):
    return False
  atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
  return True


def read_jsonl(path: str) -> list[dict]:
  """Records of `path`; a last line cut short by a kill is ignored."""
  if not exists(path):
    return []
  records = []
  lines = read_text(path).split("\n")
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i != len(lines) - 1:
        raise IMLError(f"{path}, line {i + 1}: not valid JSON") from None
  return records
