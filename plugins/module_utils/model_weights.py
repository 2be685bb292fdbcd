"""Model weights on disk: what a complete copy is, and how far a copy has come.

Stdlib only: this runs on the managed host's Python. A manifest is
{"repo_id", "revision", "files": [{"path", "size", "sha256"}]} with sha256 None where the
source does not know it; the marker file holds the manifest a copy was verified against.
"""
from __future__ import annotations

import json
import os
import struct
import time

from ansible_collections.kimi_k2.sglang.plugins.module_utils.sha256 import sha256_file

MARKER = ".model-weights-verified.json"
INDEX = "model.safetensors.index.json"
# Not part of a model: the hf client's resume state and rsync's, and our marker.
PRIVATE = (".cache", ".rsync-partial", MARKER)


def _is_private(rel):
    return rel.split("/", 1)[0] in PRIVATE


def safetensors_size(path):
    """The size a safetensors file must have, read from its own header.

    Header: 8-byte little-endian length, then JSON whose tensors give their data_offsets
    relative to the end of the header. A truncated shard is shorter than this.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > 100 << 20:
            raise ValueError("header length %d is not plausible" % length)
        raw = f.read(length)
    if len(raw) < length:
        raise ValueError("header cut short")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise ValueError("header is not JSON: %s" % exc)
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    return 8 + length + max(ends, default=0)


def local_files(directory):
    """Relative path -> size of every file of the model in directory (private state left out)."""
    found = {}
    for root, dirs, files in os.walk(directory):
        rel_root = os.path.relpath(root, directory)
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = [d for d in dirs if not _is_private(rel_root + d)]
        for name in files:
            rel = rel_root + name
            if not _is_private(rel):
                found[rel] = os.path.getsize(os.path.join(root, name))
    return found


def index_shards(directory):
    """The shard files model.safetensors.index.json names, or None without an index."""
    path = os.path.join(directory, INDEX)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return sorted(set(json.load(f)["weight_map"].values()))


def manifest_from_directory(directory, repo_id, revision):
    """A manifest of a mirror that has no marker: its files, checked against its index.

    Sizes are the mirror's own, so each shard's size is checked against its header and the
    index must name only shards that are there: an incomplete mirror is refused here.
    """
    files = local_files(directory)
    problems = []
    shards = index_shards(directory)
    if shards is None:
        problems.append("%s is missing" % INDEX)
    else:
        problems += ["%s (named in the index) is missing" % s for s in shards if s not in files]
    for rel in sorted(files):
        if rel.endswith(".safetensors"):
            try:
                want = safetensors_size(os.path.join(directory, rel))
            except (OSError, ValueError) as exc:
                problems.append("%s: %s" % (rel, exc))
                continue
            if want != files[rel]:
                problems.append("%s is %d bytes, its header says %d" % (rel, files[rel], want))
    manifest = {"repo_id": repo_id, "revision": revision,
                "files": [{"path": p, "size": s, "sha256": None} for p, s in sorted(files.items())]}
    return manifest, problems


def read_marker(directory):
    try:
        with open(os.path.join(directory, MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check(directory, manifest, sha256=False):
    """What is wrong with directory against manifest: missing, short, long, corrupt.

    Returns {"missing": [path], "short": [path], "bad": [{"path", "reason"}],
    "present_bytes": bytes of files already right}. Short files are kept apart because a
    copy that appends (rsync --append-verify) resumes them; everything in "bad" must go.
    """
    missing, short, bad = [], [], []
    present = 0
    index_ok = False
    for entry in manifest["files"]:
        rel, size = entry["path"], entry["size"]
        path = os.path.join(directory, rel)
        if not os.path.isfile(path):
            missing.append(rel)
            continue
        have = os.path.getsize(path)
        if have < size:
            short.append(rel)
            continue
        if have > size:
            bad.append({"path": rel, "reason": "%d bytes, expected %d" % (have, size)})
            continue
        if rel.endswith(".safetensors"):
            try:
                header_size = safetensors_size(path)
            except (OSError, ValueError) as exc:
                bad.append({"path": rel, "reason": str(exc)})
                continue
            if header_size != have:
                bad.append({"path": rel, "reason": "header says %d bytes" % header_size})
                continue
        if sha256 and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            bad.append({"path": rel, "reason": "sha256 differs from the source's"})
            continue
        index_ok = index_ok or rel == INDEX
        present += size
    if index_ok:
        listed = {e["path"] for e in manifest["files"]}
        bad += [{"path": INDEX, "reason": "names %s, which the source lacks" % shard}
                for shard in index_shards(directory) if shard not in listed]
    return {"missing": missing, "short": short, "bad": bad, "present_bytes": present}


def marker_is_valid(directory, repo_id, revision):
    """The cheap check of a verified copy: its marker names this revision and every file
    it lists has its size. Returns (valid, reason)."""
    marker = read_marker(directory)
    if marker is None:
        return False, "no marker: never verified, or the copy was interrupted"
    if (marker.get("repo_id"), marker.get("revision")) != (repo_id, revision):
        return False, "the marker is for %s@%s" % (marker.get("repo_id"), marker.get("revision"))
    for entry in marker["files"]:
        path = os.path.join(directory, entry["path"])
        if not os.path.isfile(path) or os.path.getsize(path) != entry["size"]:
            return False, "%s is missing or has the wrong size" % entry["path"]
    return True, "verified %s" % marker.get("verified_at", "")


def write_marker(directory, manifest, source, sha256_checked, origin="", wave=0):
    """The marker, written last: the manifest, and how this copy came here (which kind of
    source, which host, mirror or Hub, and in which wave of the copy tree)."""
    marker = dict(manifest, source=source, origin=origin, wave=wave, sha256_checked=sha256_checked,
                  total_bytes=sum(e["size"] for e in manifest["files"]),
                  verified_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    tmp = os.path.join(directory, MARKER + ".tmp")
    with open(tmp, "w") as f:
        json.dump(marker, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o444)
    os.replace(tmp, os.path.join(directory, MARKER))


def bytes_on_disk(directory):
    """Every byte under directory, partial state included: a transfer's progress."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass  # renamed or removed by the transfer while we walked
    return total


def free_bytes(path):
    """Free bytes on path's filesystem (or its nearest existing parent's), not counting the
    blocks reserved for root: staging must leave those to the system."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def progress(done, total, elapsed, start_done):
    """Bytes done, rate since start and ETA, for a progress line."""
    rate = (done - start_done) / elapsed if elapsed > 0 else 0.0
    left = max(total - done, 0)
    return {"done_bytes": done, "total_bytes": total, "elapsed": round(elapsed, 1),
            "rate_bytes": round(rate), "eta": round(left / rate) if rate > 0 else None}


def split_streams(files, streams):
    """Spread files over at most `streams` lists of about equal bytes (largest first)."""
    bins = [[0, []] for _ in range(max(1, min(streams, len(files))))]
    for entry in sorted(files, key=lambda e: -e["size"]):
        target = min(bins, key=lambda b: b[0])
        target[0] += entry["size"]
        target[1].append(entry["path"])
    return [sorted(b[1]) for b in bins if b[1]]
