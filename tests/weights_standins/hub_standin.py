"""TEST DOUBLE of the Hugging Face Hub: serves model repos from a local folder.

Not the Hub and not a mirror: it answers only the subset of the Hub HTTP API that
huggingface_hub 2.4.0 uses for `hf download REPO --revision SHA --local-dir DIR`
(snapshot download) and `HfApi.model_info(repo, revision=SHA, files_metadata=True)`,
so tests and benchmarks can run the real client with HF_ENDPOINT pointing here.

Layout: <root>/<org>/<name>/<revision>/<files...>, revision a 40-hex commit sha.
An optional <root>/<org>/<name>/refs/<branch> file holding a sha names a branch.

Endpoints (all others 404):
  GET  /api/models/<org>/<name>[/revision/<rev>][?blobs=True]  model info + siblings
  GET  /api/models/<org>/<name>/tree/<rev>[/<dir>][?recursive=]  file listing
  HEAD|GET /<org>/<name>/resolve/<rev>/<path>                    file, Range aware
No Xet headers are ever sent, so the client always takes the plain HTTP path.

Stdlib only (runs on a bare Debian bookworm python3):
  python3 hub_standin.py --root DIR --host 127.0.0.1 --port 0 [--token T]
      [--rate-mib R] [--log FILE] [--drop-after BYTES]
Prints "hub_standin: serving ROOT on http://HOST:PORT" once ready (--port 0 picks one).
"""
import argparse
import hashlib
import json
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

SHA1_RE = re.compile(r"[0-9a-f]{40}")
RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
# Suffixes the Hub's default .gitattributes sends to LFS: those files get an LFS
# pointer (sha256 ETag, `lfs` block in listings), which is what the client checks.
LFS_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5",
                ".msgpack", ".onnx", ".model", ".tiktoken", ".npy", ".zip", ".tar", ".gz"}
CHUNK = 64 << 10


class FileMeta:
    """What the Hub knows about one file: sizes and the hashes it uses as ids."""

    def __init__(self, path: Path, rel: str):
        self.path, self.rel = path, rel
        data_sha1, sha256, size = hashlib.sha1(), hashlib.sha256(), path.stat().st_size
        data_sha1.update(b"blob %d\0" % size)  # git blob id: sha1 of "blob <size>\0" + content
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                data_sha1.update(chunk)
                sha256.update(chunk)
        self.size, self.sha256 = size, sha256.hexdigest()
        self.lfs = path.suffix in LFS_SUFFIXES
        if self.lfs:  # in git the LFS file is a pointer; its blob id is the pointer's
            pointer = (f"version https://git-lfs.github.com/spec/v1\n"
                       f"oid sha256:{self.sha256}\nsize {size}\n").encode()
            self.pointer_size = len(pointer)
            self.blob_id = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
        else:
            self.blob_id = data_sha1.hexdigest()
        # Like the Hub: an LFS file's ETag is its sha256, any other file's its git blob id.
        self.etag = self.sha256 if self.lfs else self.blob_id

    def tree_entry(self) -> dict:
        entry = {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.rel}
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return entry

    def sibling(self, blobs: bool) -> dict:
        entry: dict = {"rfilename": self.rel}
        if blobs:
            entry.update(size=self.size, blobId=self.blob_id)
            if self.lfs:
                entry["lfs"] = {"sha256": self.sha256, "size": self.size,
                                "pointerSize": self.pointer_size}
        return entry


class Store:
    """Repos on disk. Hashes every file once at start-up: the client's HEAD waits
    only HF_HUB_ETAG_TIMEOUT (10 s) and hashing a big shard on demand would exceed it."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[tuple[str, str], dict[str, FileMeta]] = {}
        for rev_dir in sorted(root.glob("*/*/*")):
            if rev_dir.is_dir() and SHA1_RE.fullmatch(rev_dir.name):
                repo = f"{rev_dir.parent.parent.name}/{rev_dir.parent.name}"
                rels = [p.relative_to(rev_dir).as_posix()
                        for p in sorted(rev_dir.rglob("*")) if p.is_file()]
                self.files[(repo, rev_dir.name)] = {rel: FileMeta(rev_dir / rel, rel) for rel in rels}

    def has_repo(self, repo: str) -> bool:
        return any(r == repo for r, _ in self.files)

    def resolve(self, repo: str, revision: str) -> str | None:
        if (repo, revision) in self.files:
            return revision
        ref = self.root / repo / "refs" / revision
        if "/" not in revision and ref.is_file():
            sha = ref.read_text().strip()
            return sha if (repo, sha) in self.files else None
        return None


class TokenBucket:
    """One limit for all connections together, like a site uplink."""

    def __init__(self, bytes_per_s: float):
        self.rate, self.lock, self.next_free = bytes_per_s, threading.Lock(), 0.0

    def take(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            # Keep at most 0.1 s of unused credit so an idle link cannot burst unboundedly.
            start = max(self.next_free, now - 0.1)
            self.next_free = start + n / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    server_version = "hub-standin/1"

    # --- plumbing -------------------------------------------------------------
    def log_message(self, *args) -> None:  # the JSON --log replaces stderr chatter
        pass

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def do_GET(self) -> None:
        self._handle(body=True)

    def _handle(self, body: bool) -> None:
        self.sent, self.aborted, self.status = 0, False, 0
        try:
            self._route(body)
        except HubError as e:
            self._error(e, body)
        except (BrokenPipeError, ConnectionResetError):
            self.aborted, self.close_connection = True, True  # client went away: not our error
        finally:
            self.server.log_request_line({
                "ts": round(time.time(), 3), "method": self.command, "path": self.path,
                "range": self.headers.get("Range"), "status": self.status,
                "bytes_sent": self.sent, "aborted": self.aborted})

    def _start(self, status: int, headers: dict) -> None:
        self.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, str(value))
        self.end_headers()

    def _json(self, value, body: bool) -> None:
        data = json.dumps(value).encode()
        self._start(200, {"Content-Type": "application/json; charset=utf-8",
                          "Content-Length": len(data)})
        if body:
            self.wfile.write(data)
            self.sent = len(data)

    def _error(self, e: HubError, body: bool) -> None:
        # The client maps X-Error-Code to its exception classes (hf_raise_for_status).
        data = json.dumps({"error": e.message}).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Content-Length": len(data), "X-Error-Message": e.message, **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        self._start(e.status, headers)
        if body:
            self.wfile.write(data)

    # --- routing ----------------------------------------------------------------
    def _route(self, body: bool) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self._repo(parts[2], parts[3])
            rest = parts[4:]
            if not rest or rest[0] == "revision" and len(rest) == 2:
                return self._model_info(repo, rest[1] if rest else "main", query, body)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]), query, body)
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(parts[0], parts[1])
            return self._resolve(repo, parts[3], "/".join(parts[4:]), body)
        raise HubError(404, None, "Not Found: this Hub stand-in serves only model downloads")

    def _repo(self, org: str, name: str) -> str:
        repo = f"{org}/{name}"
        if not self.server.store.has_repo(repo):
            raise HubError(404, "RepoNotFound", "Repository not found")
        token = self.server.token
        if token is not None:  # every repo behaves as a gated one
            auth = self.headers.get("Authorization")
            if auth is None:
                raise HubError(401, "GatedRepo",
                               f"Access to model {repo} is restricted. You must have access to it"
                               " and be authenticated to access it. Please log in.")
            if auth != f"Bearer {token}":
                raise HubError(401, None, "Invalid credentials in Authorization header")
        return repo

    def _revision(self, repo: str, revision: str) -> dict[str, FileMeta]:
        sha = self.server.store.resolve(repo, revision)
        if sha is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self.sha = sha
        return self.server.store.files[(repo, sha)]

    # --- endpoints --------------------------------------------------------------
    def _model_info(self, repo: str, revision: str, query: dict, body: bool) -> None:
        files = self._revision(repo, revision)
        blobs = query.get("blobs", "").lower() == "true"
        mtime = (self.server.store.root / repo / self.sha).stat().st_mtime
        self._json({
            "_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "modelId": repo,
            "author": repo.split("/")[0], "sha": self.sha, "private": False,
            "gated": "manual" if self.server.token else False, "disabled": False,
            "lastModified": datetime.fromtimestamp(mtime, timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "tags": [], "library_name": "transformers",
            "siblings": [m.sibling(blobs) for m in files.values()],
            "usedStorage": sum(m.size for m in files.values())}, body)

    def _tree(self, repo: str, revision: str, folder: str, query: dict, body: bool) -> None:
        files = self._revision(repo, revision)
        recursive = query.get("recursive", "").lower() == "true"
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        if prefix and not any(rel.startswith(prefix) for rel in files):
            raise HubError(404, "EntryNotFound", f"{folder} does not exist on {revision}",
                           {"X-Repo-Commit": self.sha})
        entries: dict[str, dict] = {}
        for rel, meta in files.items():
            if not rel.startswith(prefix):
                continue
            below = rel[len(prefix):].split("/")
            # Folders the listing passes through, as the Hub lists them (before files).
            for depth in range(1, len(below) if recursive else min(len(below), 2)):
                path = prefix + "/".join(below[:depth])
                entries.setdefault(path, {"type": "directory", "path": path, "size": 0,
                                          "oid": hashlib.sha1(path.encode()).hexdigest()})
            if recursive or len(below) == 1:
                entries[rel] = meta.tree_entry()
        self._json(sorted(entries.values(), key=lambda e: (e["type"] != "directory", e["path"])),
                   body)

    def _resolve(self, repo: str, revision: str, rel: str, body: bool) -> None:
        files = self._revision(repo, revision)
        meta = files.get(rel)
        if meta is None:
            raise HubError(404, "EntryNotFound", f"{rel} does not exist on {revision}",
                           {"X-Repo-Commit": self.sha})
        headers = {"X-Repo-Commit": self.sha, "ETag": f'"{meta.etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream",
                   "Content-Disposition": f'inline; filename="{rel.rsplit("/", 1)[-1]}"'}
        if meta.lfs:  # the client prefers these over ETag / Content-Length
            headers.update({"X-Linked-Etag": f'"{meta.sha256}"', "X-Linked-Size": meta.size})
        start, end, status = 0, meta.size - 1, 200
        wanted = self.headers.get("Range")
        if wanted:
            match = RANGE_RE.fullmatch(wanted.strip())
            first = int(match.group(1)) if match and match.group(1) else None
            last = int(match.group(2)) if match and match.group(2) else None
            if first is None and last is not None:  # suffix range: the last N bytes
                first, last = max(meta.size - last, 0), meta.size - 1
            if (match is None or first is None or first >= meta.size
                    or (last is not None and last < first)):
                raise HubError(416, None, "Requested Range Not Satisfiable",
                               {"Content-Range": f"bytes */{meta.size}", "X-Repo-Commit": self.sha})
            start, end, status = first, min(last if last is not None else end, meta.size - 1), 206
            headers["Content-Range"] = f"bytes {start}-{end}/{meta.size}"
        headers["Content-Length"] = end - start + 1
        self._start(status, headers)
        if body:
            self._send_file(meta, start, end + 1, cut=status == 200)

    def _send_file(self, meta: FileMeta, start: int, stop: int, cut: bool) -> None:
        bucket, drop_at = self.server.bucket, None
        if cut and self.server.drop_after is not None and self.server.first_full_get(meta):
            drop_at = start + self.server.drop_after  # simulated network drop, once per file
        with meta.path.open("rb") as f:
            f.seek(start)
            pos = start
            while pos < stop:
                n = min(CHUNK, stop - pos, (drop_at - pos) if drop_at is not None else CHUNK)
                if n <= 0:
                    self.aborted, self.close_connection = True, True
                    return
                if bucket:
                    bucket.take(n)
                chunk = f.read(n)
                self.wfile.write(chunk)
                pos += len(chunk)
                self.sent += len(chunk)


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not keep the process alive on shutdown

    def __init__(self, address, store, token, rate, log_path, drop_after):
        super().__init__(address, Handler)
        self.store, self.token, self.drop_after = store, token, drop_after
        self.bucket = TokenBucket(rate) if rate else None
        self.log_path, self.lock, self.dropped = log_path, threading.Lock(), set()

    def first_full_get(self, meta: FileMeta) -> bool:
        with self.lock:
            first = meta.path not in self.dropped
            self.dropped.add(meta.path)
            return first

    def log_request_line(self, record: dict) -> None:
        if self.log_path:
            with self.lock, open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def handle_error(self, request, client_address) -> None:
        # Disconnects mid-request are normal for a download server: stay quiet on those.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def main() -> None:
    parser = argparse.ArgumentParser(description="Hugging Face Hub test double (downloads only)")
    parser.add_argument("--root", required=True, type=Path, help="<root>/<org>/<name>/<sha>/files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (gated repo)")
    parser.add_argument("--rate-mib", type=float, help="MiB/s for all connections together")
    parser.add_argument("--log", help="append one JSON line per request")
    parser.add_argument("--drop-after", type=int, metavar="BYTES",
                        help="cut the first full GET of each file after BYTES body bytes"
                             " (exercises the client's in-process Range resume)")
    args = parser.parse_args()
    server = StandinServer((args.host, args.port), Store(args.root), args.token,
                           args.rate_mib * (1 << 20) if args.rate_mib else None,
                           args.log, args.drop_after)
    host, port = server.server_address[:2]
    print(f"hub_standin: serving {args.root} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
