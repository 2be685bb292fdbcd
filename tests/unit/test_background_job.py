"""plugins/module_utils/background_job.py and the job_progress module: a job's subprocesses
die whole at its timeout, their exit statuses are kept, and a poll never reads half a
progress file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT

from ansible_collections.kimi_k2.sglang.plugins.module_utils import background_job as bj


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, killed and not yet reaped by init, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_file(path, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text().strip()


def test_the_timeout_kills_the_whole_process_group(tmp_path):
    # The shell starts a grandchild and waits: killing the shell alone would leave it.
    job = bj.Job(timeout=1.0)
    with open(tmp_path / "log", "w") as log:
        job.start(["sh", "-c", f"sleep 60 & echo $! > {tmp_path}/child; wait"], log)
    child = int(wait_for_file(tmp_path / "child"))
    started = time.monotonic()
    assert job.supervise() is True
    assert time.monotonic() - started < 10
    assert job.timed_out and job.failed
    assert job.returncodes == [-9]
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the grandchild outlived the job's timeout"


def test_exit_statuses_are_kept_and_a_job_ends_with_its_last_process(tmp_path):
    job = bj.Job(timeout=60)
    with open(tmp_path / "log", "w") as log:
        job.start([sys.executable, "-c", "import sys; sys.exit(3)"], log)
        job.start([sys.executable, "-c", "import time; time.sleep(0.5)"], log)
    started = time.monotonic()
    assert job.supervise() is False
    assert time.monotonic() - started < 10
    assert job.returncodes == [3, 0]
    assert job.failed and not job.timed_out


def test_a_job_that_succeeds_has_not_failed(tmp_path):
    job = bj.Job(timeout=60)
    with open(tmp_path / "log", "w") as log:
        job.start(["sh", "-c", "echo hello"], log)
    assert job.supervise() is False
    assert job.returncodes == [0] and not job.failed
    assert (tmp_path / "log").read_text() == "hello\n"


def test_a_thread_job_is_supervised_through_its_own_running_and_kill(tmp_path):
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, args=(60,))
    worker.start()
    ticks = []
    job = bj.Job(timeout=1.2)
    assert job.supervise(worker.is_alive, stop.set, tick=0.3, on_tick=lambda: ticks.append(1)) is True
    worker.join(timeout=5)
    assert stop.is_set() and not worker.is_alive()
    assert 2 <= len(ticks) <= 5


def test_progress_is_rewritten_whole_with_the_elapsed_time(tmp_path):
    progress = bj.Progress(str(tmp_path), digits=1, done=0, total=5)
    assert bj.read_progress(str(tmp_path)) == {"state": "running", "done": 0, "total": 5, "elapsed": 0.0}
    progress.write(done=2)
    assert bj.read_progress(str(tmp_path))["done"] == 2
    progress.write(state="finished", elapsed=12.5)  # the caller's own elapsed wins
    assert bj.read_progress(str(tmp_path)) == {"state": "finished", "done": 2, "total": 5, "elapsed": 12.5}
    assert os.listdir(tmp_path) == [bj.PROGRESS]


def test_a_write_that_fails_halfway_leaves_the_last_whole_progress(tmp_path):
    progress = bj.Progress(str(tmp_path), done=1, total=5)
    before = (tmp_path / bj.PROGRESS).read_text()
    # json.dump writes "{..., "done": " before it meets the object it cannot encode.
    with pytest.raises(TypeError):
        progress.write(done=object())
    assert (tmp_path / bj.PROGRESS).read_text() == before
    assert json.loads(before)["done"] == 1


def test_a_poll_reads_missing_before_the_job_writes_and_returns_at_once_when_it_ended(tmp_path):
    started = time.monotonic()
    assert bj.wait_progress(str(tmp_path), wait=0.5, interval=0.1) == {"state": "missing"}
    assert time.monotonic() - started >= 0.5
    bj.write_json(str(tmp_path / bj.PROGRESS), {"state": "failed", "done": 1})
    started = time.monotonic()
    assert bj.wait_progress(str(tmp_path), wait=30)["state"] == "failed"
    assert time.monotonic() - started < 1


def test_a_poll_returns_as_soon_as_a_running_job_ends(tmp_path):
    bj.write_json(str(tmp_path / bj.PROGRESS), {"state": "running"})
    timer = threading.Timer(0.5, bj.write_json, (str(tmp_path / bj.PROGRESS), {"state": "finished"}))
    timer.start()
    started = time.monotonic()
    assert bj.wait_progress(str(tmp_path), wait=30, interval=0.1)["state"] == "finished"
    assert time.monotonic() - started < 5


def job_progress(**args) -> dict:
    """Run the job_progress module on localhost, as a play does."""
    run = subprocess.run(["ansible", "localhost", "-m", "kimi_k2.sglang.job_progress",
                          "-a", json.dumps(args), "-o"], capture_output=True, text=True,
                         env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")))
    head, _, body = run.stdout.partition(" => ")
    return dict(json.loads(body), _failed="FAILED" in head)


def test_job_progress_fills_the_callers_message_from_the_progress(tmp_path):
    bj.write_json(str(tmp_path / bj.PROGRESS), {"state": "running", "done": 4, "total": 10, "elapsed": 7})
    result = job_progress(work_dir=str(tmp_path), wait=0,
                          message="latency {state}: {done}/{total} requests, {elapsed} s, {eta} left")
    assert not result["_failed"], result
    assert result["line"] == "latency running: 4/10 requests, 7 s, ? left"
    assert result["progress"]["done"] == 4
