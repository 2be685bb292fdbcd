"""plugins/module_utils/sha256.py: the one sha256 helper, a file read in blocks gives the
digest of its whole content."""
from __future__ import annotations

import hashlib

import pytest

from ansible_collections.kimi_k2.sglang.plugins.module_utils.sha256 import sha256_bytes, sha256_file


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 7])
def test_a_file_read_in_blocks_has_the_digest_of_its_whole_content(tmp_path, size):
    data = bytes(i % 251 for i in range(size))
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(str(tmp_path / "f"), block=4096) == hashlib.sha256(data).hexdigest()
    assert sha256_bytes(data) == hashlib.sha256(data).hexdigest()
