"""The real huggingface_hub client (SGLang's venv) downloads from the Hub stand-in.

These tests pin both halves of weight staging: that tests/weights_standins/hub_standin.py
answers the way the Hub does for `hf download` and `model_info`, and how the client
behaves on interruption and re-run, which the staging role relies on.
"""
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "tests" / "weights_standins"
from make_test_model import write_model  # noqa: E402  (STANDINS, on the path: pytest.ini)

SGLANG_PYTHON = os.environ.get("SGLANG_PYTHON")
pytestmark = pytest.mark.skipif(
    not SGLANG_PYTHON, reason="SGLANG_PYTHON unset: it names the python with huggingface_hub 2.4.0")

REPO = "acme/tiny-model"
SHA = "0123456789abcdef0123456789abcdef01234567"
BIG_REPO = "acme/one-big-shard"  # one shard above the client's 10 MiB read chunk
CHUNK = 10 << 20  # huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    write_model(root / REPO / SHA, shards=4, shard_bytes=1 << 20, seed=1)
    write_model(root / BIG_REPO / SHA, shards=1, shard_bytes=12 << 20, seed=2)
    return root


@contextlib.contextmanager
def standin(root, tmp_path, *args):
    """Run the stand-in on a free port; yields (endpoint, log path)."""
    log = tmp_path / f"hub-{time.monotonic_ns()}.log"
    proc = subprocess.Popen(
        [sys.executable, str(STANDINS / "hub_standin.py"), "--root", str(root),
         "--host", "127.0.0.1", "--port", "0", "--log", str(log), *args],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the files are hashed and the port bound
        assert "serving" in line, f"stand-in did not start: {line!r}"
        yield line.split(" on ")[-1].strip(), log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client_env(tmp_path, endpoint, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}  # no real token
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", **extra)
    return env


def hf_download(tmp_path, endpoint, dest, *args, repo=REPO, revision=SHA, wait=True, **env):
    cmd = [SGLANG_PYTHON, "-m", "huggingface_hub.cli.hf", "download", repo,
           "--revision", revision, "--local-dir", str(dest), *args]
    if not wait:
        return subprocess.Popen(cmd, env=client_env(tmp_path, endpoint, **env),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, env=client_env(tmp_path, endpoint, **env),
                          capture_output=True, text=True, timeout=60)


def log_lines(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def body_gets(log):
    return [r for r in log_lines(log) if r["method"] == "GET" and "/resolve/" in r["path"]]


def tree_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts}


def test_full_download_is_byte_identical(hub_root, tmp_path):
    with standin(hub_root, tmp_path) as (endpoint, log):
        done = hf_download(tmp_path, endpoint, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert tree_files(tmp_path / "out") == tree_files(hub_root / REPO / SHA)
    paths = {r["path"].split("?")[0] for r in log_lines(log)}
    # Plain HTTP only: a Xet header would have sent the client to xet token endpoints.
    assert not any("xet" in p for p in paths), paths
    assert f"/api/models/{REPO}/tree/{SHA}" in paths


def test_model_info_sizes_and_sha256_match(hub_root, tmp_path):
    script = ("import json, sys\nfrom huggingface_hub import HfApi\n"
              "info = HfApi(endpoint=sys.argv[1]).model_info(sys.argv[2], revision=sys.argv[3],"
              " files_metadata=True)\n"
              "print(json.dumps({'sha': info.sha, 'files': {s.rfilename: [s.size,"
              " s.lfs.sha256 if s.lfs else None, s.lfs.size if s.lfs else None]"
              " for s in info.siblings}}))\n")
    with standin(hub_root, tmp_path) as (endpoint, _):
        done = subprocess.run([SGLANG_PYTHON, "-c", script, endpoint, REPO, SHA],
                              env=client_env(tmp_path, endpoint), capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["sha"] == SHA
    source = tree_files(hub_root / REPO / SHA)
    assert set(info["files"]) == set(source)
    for name, data in source.items():
        size, sha256, lfs_size = info["files"][name]
        assert size == len(data)
        if name.endswith(".safetensors"):
            assert (sha256, lfs_size) == (hashlib.sha256(data).hexdigest(), len(data))
        else:
            assert sha256 is None, f"{name} must not look like an LFS file"


def test_interrupted_download_finishes_on_rerun_without_refetching(hub_root, tmp_path):
    dest, total = tmp_path / "out", sum(map(len, tree_files(hub_root / REPO / SHA).values()))
    first_shard = dest / "model-00001-of-00004.safetensors"
    # One worker at 2 MiB/s: shards arrive one by one, ~0.5 s each; kill once the first landed.
    with standin(hub_root, tmp_path, "--rate-mib", "2") as (endpoint, log1):
        client = hf_download(tmp_path, endpoint, dest, "--max-workers", "1", wait=False)
        deadline = time.monotonic() + 20
        while not first_shard.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        client.send_signal(signal.SIGKILL)  # as a crash or a reboot would
        client.wait(timeout=10)
    assert first_shard.exists(), "first shard never arrived"
    assert not (dest / "model-00004-of-00004.safetensors").exists(), "killed too late"
    complete_after_kill = set(tree_files(dest))
    with standin(hub_root, tmp_path) as (endpoint, log2):
        done = hf_download(tmp_path, endpoint, dest)
    assert done.returncode == 0, done.stderr
    assert tree_files(dest) == tree_files(hub_root / REPO / SHA)
    second = body_gets(log2)
    assert sum(r["bytes_sent"] for r in second) < total
    refetched = {r["path"].rsplit("/", 1)[-1] for r in second}
    assert not refetched & complete_after_kill, "files finished before the kill were fetched again"


def test_dropped_connection_resumes_with_range(hub_root, tmp_path):
    # huggingface_hub 2.4.0 resumes (Range) only inside one run, after a network error,
    # from the last whole 10 MiB chunk it wrote: drop the connection after 11 MiB.
    shard = "model-00001-of-00001.safetensors"
    with standin(hub_root, tmp_path, "--drop-after", str(11 << 20)) as (endpoint, log):
        done = hf_download(tmp_path, endpoint, tmp_path / "out", shard, repo=BIG_REPO)
    assert done.returncode == 0, done.stderr
    source = (hub_root / BIG_REPO / SHA / shard).read_bytes()
    assert (tmp_path / "out" / shard).read_bytes() == source
    gets = body_gets(log)
    assert [(r["status"], r["range"]) for r in gets] == [(200, None), (206, f"bytes={CHUNK}-")]
    assert gets[0]["bytes_sent"] == 11 << 20 and gets[0]["aborted"]
    assert gets[1]["bytes_sent"] == len(source) - CHUNK


def test_rerun_of_complete_download_transfers_no_file_bodies(hub_root, tmp_path):
    with standin(hub_root, tmp_path) as (endpoint, log):
        assert hf_download(tmp_path, endpoint, tmp_path / "out").returncode == 0
        before = len(log_lines(log))
        again = hf_download(tmp_path, endpoint, tmp_path / "out")
    assert again.returncode == 0, again.stderr
    # A pinned sha + .cache/huggingface metadata: the client does not even send HEADs.
    assert [r for r in log_lines(log)[before:] if f"/{REPO}/" in r["path"]] == []


def test_token_required(hub_root, tmp_path):
    with standin(hub_root, tmp_path, "--token", "s3cret") as (endpoint, _):
        missing = hf_download(tmp_path, endpoint, tmp_path / "a")
        wrong = hf_download(tmp_path, endpoint, tmp_path / "b", HF_TOKEN="nope")
        right = hf_download(tmp_path, endpoint, tmp_path / "c", "config.json", HF_TOKEN="s3cret")
    assert missing.returncode != 0 and "requires approval" in missing.stderr  # GatedRepoError
    assert wrong.returncode != 0 and "Invalid credentials in Authorization header" in wrong.stderr
    assert right.returncode == 0, right.stderr
    assert not (tmp_path / "a" / "config.json").exists()


def test_unknown_revision_and_repo_fail(hub_root, tmp_path):
    with standin(hub_root, tmp_path) as (endpoint, _):
        revision = hf_download(tmp_path, endpoint, tmp_path / "a", revision="f" * 40)
        repo = hf_download(tmp_path, endpoint, tmp_path / "b", repo="acme/absent")
    assert revision.returncode != 0 and "Revision not found" in revision.stderr
    assert repo.returncode != 0 and "not found" in repo.stderr
