"""Atomic file writes and tolerant JSONL reads: a kill never leaves a half-written file behind."""
import json
import os
import tempfile

from iml_jax.errors import IMLError


def atomic_write_text(path: str, text: str) -> None:
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
  try:
    with os.fdopen(fd, "w") as handle:
      handle.write(text)
      handle.flush()
      os.fsync(handle.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_json(path: str, value) -> None:
  atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str, records: list[dict]) -> None:
  """Appends whole lines; a last line cut short by a kill is dropped first, so it never ends up mid-file."""
  if os.path.exists(path):
    with open(path, "rb+") as handle:
      data = handle.read()
      if data and not data.endswith(b"\n"):
        handle.truncate(data.rfind(b"\n") + 1)
  with open(path, "a") as handle:
    handle.write("".join(json.dumps(r) + "\n" for r in records))
    handle.flush()
    os.fsync(handle.fileno())


def read_jsonl(path: str) -> list[dict]:
  """Records of `path`; a last line cut short by a kill is ignored."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as handle:
    lines = handle.read().split("\n")
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i != len(lines) - 1:
        raise IMLError(f"{path}, line {i + 1}: not valid JSON") from None
  return records
