"""One background job on a managed host: supervised subprocesses and a progress file.

Stdlib only: this runs on the managed host's Python. A play starts the module that runs
the job with C(async) and C(poll: 0) (Ansible detaches it and keeps its result for
async_status); the module runs its work through a Job:

- every subprocess in a session, so a process group, of its own: a kill reaches its
  children too (bench_serving's tokenizer workers, the hf client's downloads);
- a wall-clock timeout that kills each group whole, and the exit statuses kept;
- <work_dir>/progress.json, a JSON object with a "state" (running, finished, failed)
  rewritten whole beside its final name and renamed into place, so a poll never reads
  half a file.

The module job_progress reads that file for the play, one interval at a time.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

PROGRESS = "progress.json"
RUNNING = "running"
MISSING = "missing"  # what a poll reads before the job has written anything


def write_json(path, data):
    """Write data as JSON to path atomically: a temporary file, then os.replace."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def read_progress(work_dir):
    """The job's progress, or {"state": "missing"} while there is none to read."""
    try:
        with open(os.path.join(work_dir, PROGRESS), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"state": MISSING}


def wait_progress(work_dir, wait, interval=1.0):
    """Read the progress until the job has ended (any state but running or missing), at
    most `wait` seconds: a poll returns at once for a job that is over."""
    deadline = time.monotonic() + wait
    current = read_progress(work_dir)
    while current.get("state") in (RUNNING, MISSING) and time.monotonic() < deadline:
        time.sleep(interval)
        current = read_progress(work_dir)
    return current


class Progress:
    """Keeps <work_dir>/progress.json current. Every write sets "elapsed" (seconds since
    the start, rounded to `digits`, None for a whole number) unless the caller gives it."""

    def __init__(self, work_dir, digits=None, **fields):
        self.path = os.path.join(work_dir, PROGRESS)
        self.digits = digits
        self.started = time.monotonic()
        self.lock = threading.Lock()  # a reader thread and the supervisor both write
        self.state = dict(fields, state=RUNNING)
        self.write()

    def elapsed(self):
        return time.monotonic() - self.started

    def write(self, **changes):
        with self.lock:
            self.state.update({"elapsed": round(self.elapsed(), self.digits)}, **changes)
            write_json(self.path, self.state)


def spawn(argv, stdout, env=None, cwd=None, stderr=subprocess.STDOUT):
    """Start argv in a process group of its own, stdin closed."""
    return subprocess.Popen(argv, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, start_new_session=True)


def kill_group(proc):
    """SIGKILL proc's whole process group, unless proc has been reaped already: then its
    pid, the group's id, may belong to another process by now."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


class Job:
    """The subprocesses of one job and its wall-clock limit, counted from `started`."""

    def __init__(self, timeout, started=None):
        self.timeout = timeout
        self.started = time.monotonic() if started is None else started
        self.procs = []
        self.timed_out = False

    def start(self, argv, stdout, env=None, cwd=None, stderr=subprocess.STDOUT):
        proc = spawn(argv, stdout, env=env, cwd=cwd, stderr=stderr)
        self.procs.append(proc)
        return proc

    def running(self):
        return any(proc.poll() is None for proc in self.procs)

    def kill(self):
        for proc in self.procs:
            kill_group(proc)

    @property
    def returncodes(self):
        """Each subprocess's exit status (negative: killed by that signal)."""
        return [proc.returncode for proc in self.procs]

    @property
    def failed(self):
        return self.timed_out or any(self.returncodes)

    def supervise(self, running=None, kill=None, tick=2.0, on_tick=None):
        """Wait until the job ends or its timeout passes, calling on_tick every `tick`
        seconds meanwhile; at the timeout kill it. `running` and `kill` default to the
        subprocesses'; a job whose work is a thread gives its own. Returns timed_out."""
        running = running or self.running
        kill = kill or self.kill
        next_tick = self.started + tick
        while running():
            if time.monotonic() - self.started > self.timeout:
                self.timed_out = True
                kill()
                break
            time.sleep(0.2)
            if on_tick is not None and time.monotonic() >= next_tick:
                next_tick += tick
                on_tick()
        for proc in self.procs:
            proc.wait()
        return self.timed_out
