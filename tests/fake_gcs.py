"""A Google Cloud Storage stand-in on 127.0.0.1 for the gs:// tests.

It serves the part of GCS's JSON API that the real clients of a gs:// workdir call — gcsfs (behind
etils.epath), google-cloud-storage (Orbax's bucket check, tensorboardX's event files) and TensorStore's gcs
driver (Orbax's arrays) — so those clients run unchanged, pointed here by `client_env()`. Objects live in
memory with GCS's semantics: an upload becomes visible whole when it completes (a resumable upload only on
its last chunk), there is no rename and no directory, and every write gets a new generation that
`ifGenerationMatch` / `ifGenerationNotMatch` preconditions are checked against (TensorStore's OCDBT depends on
them). Buckets exist when named in `buckets`.
"""

import base64
import datetime
import hashlib
import http.server
import itertools
import json
import sys
import threading
import urllib.parse

import google_crc32c


class FakeGCS:
  def __init__(self, buckets=("bucket",)):
    self.buckets = set(buckets)
    self.objects: dict[tuple[str, str], tuple[bytes, int]] = {}  # (bucket, name) -> (data, generation)
    self.uploads: dict[str, dict] = {}  # resumable upload id -> {"bucket", "name", "data", "query"}
    self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for assertions
    self.lock = threading.Lock()
    self._generations = itertools.count(1_000_001)
    handler = type("Handler", (_Handler,), {"gcs": self})
    self.server = _Server(("127.0.0.1", 0), handler)
    self.server.daemon_threads = True
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
    self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
    self._thread.start()

  def close(self) -> None:
    self.server.shutdown()
    self.server.server_close()

  def client_env(self) -> dict[str, str]:
    """Environment variables that send every GCS client here, anonymously; the metadata-server look-ups of
    Google's auth libraries go to a closed local port, never to the network."""
    return {
      "STORAGE_EMULATOR_HOST": self.url,
      "TENSORSTORE_GCS_HTTP_URL": self.url,
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "fake-token",
      "FSSPEC_GS_TOKEN": "anon",
      "FSSPEC_GCS_TOKEN": "anon",
      "GOOGLE_CLOUD_PROJECT": "fake-project",
      "NO_GCE_CHECK": "True",
      "GCE_METADATA_HOST": "127.0.0.1:9",
      "GCE_METADATA_ROOT": "127.0.0.1:9",
      "GCE_METADATA_IP": "127.0.0.1:9",
      # gcsfs's bucket-type look-up uses the gRPC control plane, which is not served here
      "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    }

  def names(self, bucket: str = "bucket", prefix: str = "") -> list[str]:
    with self.lock:
      return sorted(n for b, n in self.objects if b == bucket and n.startswith(prefix))

  def read(self, uri: str) -> bytes:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    with self.lock:
      return self.objects[(bucket, name)][0]

  def delete(self, uri: str) -> None:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    with self.lock:
      del self.objects[(bucket, name)]

  # Requests -------------------------------------------------------------------------------------------------

  def metadata(self, bucket: str, name: str, data: bytes, generation: int) -> dict:
    crc = google_crc32c.value(data).to_bytes(4, "big")
    stamp = datetime.datetime.fromtimestamp(generation / 1e6 + 1.7e9, datetime.timezone.utc).strftime(
      "%Y-%m-%dT%H:%M:%S.%fZ"
    )
    return {
      "kind": "storage#object",
      "id": f"{bucket}/{name}/{generation}",
      "name": name,
      "bucket": bucket,
      "generation": str(generation),
      "metageneration": "1",
      "size": str(len(data)),
      "contentType": "application/octet-stream",
      "storageClass": "STANDARD",
      "md5Hash": base64.b64encode(hashlib.md5(data).digest()).decode(),
      "crc32c": base64.b64encode(crc).decode(),
      "timeCreated": stamp,
      "updated": stamp,
    }

  def precondition_failed(self, bucket: str, name: str, query: dict) -> int | None:
    """The status a request's generation preconditions answer with, or None when they hold."""
    current = self.objects.get((bucket, name))
    generation = current[1] if current else 0
    if "ifGenerationMatch" in query and int(query["ifGenerationMatch"]) != generation:
      return 412
    if "ifGenerationNotMatch" in query and int(query["ifGenerationNotMatch"]) == generation:
      return 304
    return None

  def store(self, bucket: str, name: str, data: bytes, query: dict) -> tuple[int, dict]:
    with self.lock:
      if bucket not in self.buckets:
        return 404, _error(404, f"bucket {bucket} not found")
      if self.precondition_failed(bucket, name, query) is not None:
        return 412, _error(412, "precondition failed")
      generation = next(self._generations)
      self.objects[(bucket, name)] = (data, generation)
      return 200, self.metadata(bucket, name, data, generation)


class _Server(http.server.ThreadingHTTPServer):
  def handle_error(self, request, client_address):
    """A client that hangs up before reading the whole answer (TensorStore cancels reads it no longer needs)
    is no error of the server's; anything else is printed as usual."""
    if not isinstance(sys.exc_info()[1], ConnectionError):
      super().handle_error(request, client_address)


def _error(code: int, message: str) -> dict:
  return {"error": {"code": code, "message": message, "errors": [{"message": message, "reason": "fake"}]}}


class _Handler(http.server.BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"
  disable_nagle_algorithm = True  # small answers on kept-alive connections would otherwise wait 40 ms each
  gcs: FakeGCS

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    del format, args

  def _body(self) -> bytes:
    if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
      chunks = []
      while size := int(self.rfile.readline().strip().split(b";")[0], 16):
        chunks.append(self.rfile.read(size))
        self.rfile.readline()
      self.rfile.readline()
      return b"".join(chunks)
    return self.rfile.read(int(self.headers.get("Content-Length") or 0))

  def _send(self, status: int, body=b"", headers=None) -> None:
    if isinstance(body, (dict, list)):
      body = json.dumps(body).encode()
      headers = {"Content-Type": "application/json", **(headers or {})}
    self.send_response(status)
    for key, value in (headers or {}).items():
      self.send_header(key, value)
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(body)

  def _route(self):
    url = urllib.parse.urlsplit(self.path)
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    parts = [urllib.parse.unquote(p) for p in url.path.split("/")]
    with self.gcs.lock:
      self.gcs.requests.append((self.command, self.path))
    return parts, query

  def do_GET(self):  # pylint: disable=invalid-name
    parts, query = self._route()
    if parts[1:3] == ["download", "storage"]:  # /download/storage/v1/b/B/o/NAME: same as alt=media
      parts = parts[:1] + parts[2:]
      query["alt"] = "media"
    if parts[1:5] != ["storage", "v1", "b", parts[4] if len(parts) > 4 else ""] or len(parts) < 5:
      return self._send(404, _error(404, f"unknown path {self.path}"))
    bucket = parts[4]
    if bucket not in self.gcs.buckets:
      return self._send(404, _error(404, f"bucket {bucket} not found"))
    if len(parts) == 5:
      return self._send(
        200,
        {
          "kind": "storage#bucket",
          "name": bucket,
          "id": bucket,
          "location": "US",
          "storageClass": "STANDARD",
          "metageneration": "1",
        },
      )
    if len(parts) == 6 and parts[5] == "o":
      return self._send(200, self._list(bucket, query))
    name = "/".join(parts[6:])
    with self.gcs.lock:
      current = self.gcs.objects.get((bucket, name))
      status = self.gcs.precondition_failed(bucket, name, query) if current else None
    if current is None:
      return self._send(404, _error(404, f"No such object: {bucket}/{name}"))
    if status is not None:
      return self._send(status, b"" if status == 304 else _error(status, "precondition failed"))
    data, generation = current
    meta = self.gcs.metadata(bucket, name, data, generation)
    if query.get("alt") != "media":
      return self._send(200, meta)
    headers = {
      "Content-Type": "application/octet-stream",
      "X-Goog-Generation": str(generation),
      "X-Goog-Metageneration": "1",
      "X-Goog-Hash": f"crc32c={meta['crc32c']},md5={meta['md5Hash']}",
      "X-Goog-Stored-Content-Length": str(len(data)),
      "ETag": f'"{meta["md5Hash"]}"',
    }
    if (spec := self.headers.get("Range", "")).startswith("bytes="):
      first, _, last = spec[len("bytes=") :].partition("-")
      if not first:  # the last N bytes
        start, end = max(len(data) - int(last), 0), len(data)
      else:
        start, end = int(first), min(int(last) + 1 if last else len(data), len(data))
      if start >= len(data) and len(data):
        return self._send(416, _error(416, "range not satisfiable"))
      headers["Content-Range"] = f"bytes {start}-{max(end - 1, start)}/{len(data)}"
      headers.pop("X-Goog-Hash")  # a hash describes the whole object, not a range of it
      return self._send(206, data[start:end], headers)
    return self._send(200, data, headers)

  do_HEAD = do_GET

  def _list(self, bucket: str, query: dict) -> dict:
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    start, end = query.get("startOffset", ""), query.get("endOffset", "")
    with self.gcs.lock:
      matching = sorted(
        (n, v)
        for (b, n), v in self.gcs.objects.items()
        if b == bucket and n.startswith(prefix) and n >= start and (not end or n < end)
      )
    items, prefixes = [], set()
    for name, (data, generation) in matching:
      rest = name[len(prefix) :]
      if delimiter and delimiter in rest:
        prefixes.add(prefix + rest[: rest.index(delimiter) + len(delimiter)])
      else:
        items.append(self.gcs.metadata(bucket, name, data, generation))
    return {"kind": "storage#objects", "items": items, "prefixes": sorted(prefixes)}

  def do_POST(self):  # pylint: disable=invalid-name
    parts, query = self._route()
    body = self._body()
    if "upload_id" in query:
      return self._upload_chunk(query, body)
    if parts[1:3] == ["upload", "storage"] and len(parts) >= 7:
      return self._upload(parts[5], query, body)
    if len(parts) >= 11 and parts[1:3] == ["storage", "v1"] and parts[-4] in ("rewriteTo", "copyTo"):
      return self._copy(parts, query)
    return self._send(404, _error(404, f"unknown path {self.path}"))

  def _upload(self, bucket: str, query: dict, body: bytes):
    kind = query.get("uploadType", "media")
    if kind == "media":
      return self._send(*self.gcs.store(bucket, query["name"], body, query))
    if kind == "multipart":
      boundary = self.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
      sections = [s for s in body.split(b"--" + boundary) if s.strip() not in (b"", b"--")]
      metadata, data = (s.split(b"\r\n\r\n", 1)[1] for s in sections[:2])
      data = data[:-2] if data.endswith(b"\r\n") else data
      name = json.loads(metadata).get("name") or query["name"]
      return self._send(*self.gcs.store(bucket, name, data, query))
    if kind == "resumable":
      name = (json.loads(body) if body.strip() else {}).get("name") or query["name"]
      with self.gcs.lock:
        upload_id = f"upload-{next(self.gcs._generations)}"  # never reused, unlike a count of open uploads
        self.gcs.uploads[upload_id] = {"bucket": bucket, "name": name, "data": b"", "query": query}
      location = f"{self.gcs.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={upload_id}"
      return self._send(200, b"", {"Location": location, "X-GUploader-UploadID": upload_id})
    return self._send(400, _error(400, f"uploadType {kind} is not supported here"))

  def do_PUT(self):  # pylint: disable=invalid-name
    _, query = self._route()
    return self._upload_chunk(query, self._body())

  def _upload_chunk(self, query: dict, body: bytes):
    """A chunk of a resumable upload (gcsfs POSTs them, google-cloud-storage PUTs them); the object is stored
    when the last one arrives."""
    upload = self.gcs.uploads.get(query.get("upload_id", ""))
    if upload is None:
      return self._send(404, _error(404, "no such upload"))
    upload["data"] += body
    total = self.headers.get("Content-Range", "").rpartition("/")[2]
    if total == "*" or (total.isdigit() and len(upload["data"]) < int(total)):
      headers = {"Range": f"bytes=0-{len(upload['data']) - 1}"} if upload["data"] else {}
      return self._send(308, b"", headers)
    del self.gcs.uploads[query["upload_id"]]
    return self._send(*self.gcs.store(upload["bucket"], upload["name"], upload["data"], upload["query"]))

  def _copy(self, parts: list[str], query: dict):
    index = parts.index("rewriteTo") if "rewriteTo" in parts else parts.index("copyTo")
    source_bucket, source = parts[4], "/".join(parts[6:index])
    target_bucket, target = parts[index + 2], "/".join(parts[index + 4 :])
    with self.gcs.lock:
      current = self.gcs.objects.get((source_bucket, source))
    if current is None:
      return self._send(404, _error(404, f"No such object: {source_bucket}/{source}"))
    status, meta = self.gcs.store(target_bucket, target, current[0], query)
    if status != 200 or parts[index] == "copyTo":
      return self._send(status, meta)
    size = str(len(current[0]))
    return self._send(
      200,
      {
        "kind": "storage#rewriteResponse",
        "done": True,
        "resource": meta,
        "totalBytesRewritten": size,
        "objectSize": size,
      },
    )

  def do_DELETE(self):  # pylint: disable=invalid-name
    parts, query = self._route()
    bucket, name = parts[4], "/".join(parts[6:])
    with self.gcs.lock:
      if (bucket, name) not in self.gcs.objects:
        status = 404
      elif self.gcs.precondition_failed(bucket, name, query) is not None:
        status = 412
      else:
        status = 204
        del self.gcs.objects[(bucket, name)]
    return self._send(status, _error(status, f"{bucket}/{name}") if status != 204 else b"")
