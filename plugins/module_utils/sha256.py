"""sha256 digests of files and bytes: the one place plugins compute them.

Stdlib only: this runs on the managed host's Python. A file is read in blocks, so a
600 GiB model shard or a wheel never sits in memory whole.
"""
from __future__ import annotations

import hashlib

BLOCK = 8 << 20


def sha256_bytes(data):
    """Hex sha256 of bytes already in memory."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, block=BLOCK):
    """Hex sha256 of the file at path, read `block` bytes at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()
