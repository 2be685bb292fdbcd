"""plugins/modules/wheelhouse_archive.py: a wheelhouse becomes one tar named by
its content, the same bytes wherever and whenever it is built."""
from __future__ import annotations

import hashlib
import os
import tarfile

import pytest

from ansible_collections.kimi_k2.sglang.plugins.modules import wheelhouse_archive as arc


def build(src, dest):
    names = arc.wheel_files(src)
    listing = arc.sums(src, names)
    digest = hashlib.sha256(listing).hexdigest()
    path = dest / f"wheelhouse-{digest}.tar"
    dest.mkdir(exist_ok=True)
    arc.write_archive(str(src), names, listing, str(path))
    return digest, path


@pytest.fixture
def wheelhouse(tmp_path):
    src = tmp_path / "wheels"
    src.mkdir()
    (src / "b-1.0-py3-none-any.whl").write_bytes(b"bbb")
    (src / "a-2.0-py3-none-any.whl").write_bytes(b"aaaa")
    (src / ".downloaded").write_text("")  # a Makefile stamp, not a wheel
    (src / "sub").mkdir()                 # pip --find-links does not look inside
    return src


def test_same_wheels_give_the_same_bytes_whatever_their_times(wheelhouse, tmp_path):
    digest1, first = build(wheelhouse, tmp_path / "one")
    os.utime(wheelhouse / "a-2.0-py3-none-any.whl", (1, 1))
    (wheelhouse / "a-2.0-py3-none-any.whl").chmod(0o600)
    digest2, second = build(wheelhouse, tmp_path / "two")
    assert digest1 == digest2
    assert first.read_bytes() == second.read_bytes()


def test_a_changed_wheel_changes_the_digest(wheelhouse, tmp_path):
    digest1, _ = build(wheelhouse, tmp_path / "one")
    (wheelhouse / "b-1.0-py3-none-any.whl").write_bytes(b"bbB")
    digest2, _ = build(wheelhouse, tmp_path / "two")
    assert digest1 != digest2


def test_the_archive_holds_the_wheels_then_their_sums(wheelhouse, tmp_path, monkeypatch):
    # The directory's own order depends on the file system: hand it over reversed.
    listdir = os.listdir
    monkeypatch.setattr(arc.os, "listdir", lambda path: sorted(listdir(path), reverse=True))
    digest, path = build(wheelhouse, tmp_path / "out")
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == [
            "a-2.0-py3-none-any.whl", "b-1.0-py3-none-any.whl", "SHA256SUMS"]
        assert {(m.uid, m.gid, m.mode, m.mtime) for m in members} == {(0, 0, 0o644, 0)}
        sums = tar.extractfile("SHA256SUMS").read()
    assert hashlib.sha256(sums).hexdigest() == digest
    assert sums.decode().splitlines()[0] == \
        f"{hashlib.sha256(b'aaaa').hexdigest()}  a-2.0-py3-none-any.whl"
    assert not list((tmp_path / "out").glob("*.part"))
