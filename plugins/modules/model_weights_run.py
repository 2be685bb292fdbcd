#!/usr/bin/python
"""Ansible module: one long weights job (Hub download, copy, or prewarm) with progress."""
from __future__ import annotations

DOCUMENTATION = r"""
module: model_weights_run
short_description: Download, copy or prewarm model weights, writing progress as it goes
description:
  - C(method=hub) runs the hf CLI (huggingface_hub) into C(dest); it resumes interrupted
    files itself. The token reaches it as HF_TOKEN_PATH, a file, never on a command line.
  - C(method=rsync) copies C(files) from C(source) (a local mirror path, or an rsync daemon
    URL) in C(streams) parallel rsync processes. Each file appears at its final name only
    once complete (rsync's temporary file, then a rename); an interrupted file waits in
    C(.rsync-partial/) and the next copy resumes from it.
  - C(method=follow) copies C(files) from C(upstream), a host of the copy tree that may
    still be staging its own copy at C(source). Every few seconds it lists C(source) and
    copies, C(streams) at a time, the files that are there at their final name with the
    size in C(files), until it has them all. A file at its final name is complete, since
    every writer (the hf client, rsync) renames a file into place only when it is. It fails,
    naming C(upstream), when no further file has become complete there for
    C(stall_timeout) seconds, or when a copy from it fails.
  - C(method=prewarm) reads C(files) once, so the page cache holds them before the server
    loads them.
  - Meant to be started with C(async). Every few seconds it writes C(work_dir)/progress.json
    (state, done_bytes, total_bytes, rate_bytes, eta, elapsed; for follow also upstream,
    files_done and first_file_at, the epoch second its first file landed); the job's output goes to
    C(work_dir)/<method>.log; kimi_k2.sglang.job_progress reads the progress. Killed and
    failed at C(timeout) seconds, each hf or rsync process with its process group.
options:
  method: {description: What to run., type: str, required: true, choices: [hub, rsync, follow, prewarm]}
  dest: {description: The copy's directory., type: path, required: true}
  files: {description: Paths relative to dest with their sizes (size, path)., type: list, elements: dict, required: true}
  work_dir: {description: Private directory for progress and log., type: path, required: true}
  timeout: {description: Seconds the job may take., type: float, default: 86400}
  hf_cli: {description: The hf executable (method=hub)., type: path}
  repo_id: {description: Hub repository id (method=hub)., type: str}
  revision: {description: Commit sha (method=hub)., type: str}
  endpoint: {description: Hub URL, empty for huggingface.co (method=hub)., type: str, default: ""}
  token_file: {description: File holding a Hub token (method=hub)., type: path, default: ""}
  max_workers: {description: Parallel file downloads (method=hub)., type: int, default: 8}
  source: {description: rsync source directory or rsync:// URL, ending in / (method=rsync or follow)., type: str}
  streams: {description: Parallel rsync processes (method=rsync or follow)., type: int, default: 4}
  upstream: {description: The host that C(source) belongs to, named in errors (method=follow)., type: str, default: ""}
  stall_timeout: {description: Seconds to wait for the next file to complete upstream (method=follow)., type: float, default: 1800}
  poll: {description: Seconds between listings of the upstream (method=follow)., type: float, default: 2}
"""

EXAMPLES = r"""
- name: Download from the Hub in the background
  kimi_k2.sglang.model_weights_run:
    method: hub
    dest: "{{ __model_weights_dir }}"
    files: "{{ __model_weights_manifest.files }}"
    work_dir: /var/tmp/model-weights
    hf_cli: /opt/model-weights/venv/bin/hf
    repo_id: "{{ model_weights_repo_id }}"
    revision: "{{ model_weights_revision }}"
  async: 90000
  poll: 0

- name: Follow a peer that is still staging, file by file
  kimi_k2.sglang.model_weights_run:
    method: follow
    dest: "{{ __model_weights_dir }}"
    files: "{{ __model_weights_manifest.files }}"
    work_dir: /var/tmp/model-weights/follow
    source: rsync://10.0.0.11:873/models/moonshotai/Kimi-K2-Instruct/0123456789abcdef0123456789abcdef01234567/
    upstream: gpu-node-01
  async: 90000
  poll: 0
"""

RETURN = r"""
seconds:
  description: Wall time of the job.
  type: float
  returned: always
progress:
  description: The last progress written.
  type: dict
  returned: always
"""

import os
import subprocess
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.background_job import Job, Progress, kill_group, spawn
from ansible_collections.kimi_k2.sglang.plugins.module_utils.model_weights import bytes_on_disk, progress, split_streams

TICK = 2.0

def _commands(p, lists_dir):
    if p["method"] == "hub":
        argv = [p["hf_cli"], "download", p["repo_id"], "--revision", p["revision"],
                "--local-dir", p["dest"], "--max-workers", str(p["max_workers"])]
        env = dict(os.environ, HF_HUB_DISABLE_TELEMETRY="1",
                   HF_HOME=os.path.join(p["work_dir"], "hf-home"))
        env.pop("HF_TOKEN", None)
        if p["endpoint"]:
            env["HF_ENDPOINT"] = p["endpoint"]
        if p["token_file"]:
            env["HF_TOKEN_PATH"] = p["token_file"]
        return [(argv, env)]
    return [(_rsync_argv(p["source"], p["dest"], _listing_file(lists_dir, i, paths)), None)
            for i, paths in enumerate(split_streams(p["files"], p["streams"]))]


# Not in place, not appending: rsync writes each file to a temporary name and renames it
# into place once complete, so a follower that reads this copy never takes a partial file
# for a whole one. An interrupted file is kept in .rsync-partial/ (per directory, which
# the rsync daemon does not serve) and is the basis the next copy resumes from. The
# modes are what the sender's are before verification (0644/0755), so the service user
# (the daemon's) can read an unverified copy that serves further down the tree.
def _rsync_argv(source, dest, listing):
    return ["rsync", "--recursive", "--times", "--perms", "--chmod=D755,F644",
            "--partial-dir=.rsync-partial", "--files-from", listing, "--timeout", "600",
            source, dest + "/"]


def _listing_file(lists_dir, i, paths):
    listing = os.path.join(lists_dir, "stream-%d.txt" % i)
    with open(listing, "w") as f:
        f.write("\n".join(paths) + "\n")
    return listing


def upstream_files(source):
    """Regular files at source (rsync --list-only): {relative path: size}, or an error text.

    Files still being written are not at their final names (rsync's .name.XXXXXX temporary
    files, the hf client's .cache/), so a file listed here with the manifest's size is
    complete."""
    run = subprocess.run(["rsync", "--list-only", "--recursive", "--no-human-readable",
                          "--timeout", "60", source],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if run.returncode:
        return None, (run.stderr.strip().splitlines() or ["rsync exited %d" % run.returncode])[0]
    found = {}
    for line in run.stdout.splitlines():
        fields = line.split(None, 4)
        if len(fields) == 5 and fields[0].startswith("-"):
            found[fields[4]] = int(fields[1].replace(",", ""))
    return found, ""


def _local_size(dest, rel):
    try:
        return os.path.getsize(os.path.join(dest, rel))
    except OSError:
        return -1


class Follower:
    """method=follow: copy each file of `files` from an upstream that may still be staging,
    as soon as it is complete there. Runs in a thread; error says why it stopped."""

    def __init__(self, p, log):
        self.p, self.log = p, log
        self.want = {e["path"]: int(e["size"]) for e in p["files"]}
        self.done = {rel for rel, size in self.want.items() if _local_size(p["dest"], rel) == size}
        self.error = ""
        self.first_file_at = None
        self.procs = []
        self.stop = threading.Event()

    def _copy(self, ready):
        entries = [{"path": rel, "size": self.want[rel]} for rel in ready]
        self.procs = [spawn(_rsync_argv(self.p["source"], self.p["dest"],
                                        _listing_file(self.p["work_dir"], i, paths)), self.log)
                      for i, paths in enumerate(split_streams(entries, self.p["streams"]))]
        codes = [proc.wait() for proc in self.procs]
        return max(codes)

    def run(self):
        p, upstream = self.p, self.p["upstream"] or self.p["source"]
        last_new = time.monotonic()
        why_waiting = ""
        while len(self.done) < len(self.want) and not self.stop.is_set():
            listed, why_waiting = upstream_files(p["source"])
            ready = sorted(rel for rel in self.want if rel not in self.done
                           and (listed or {}).get(rel) == self.want[rel])
            if ready:
                code = self._copy(ready)
                if self.stop.is_set():
                    return
                if code:
                    self.error = ("copying %s from %s failed (rsync exit %d): did %s fail or "
                                  "stop serving?" % (", ".join(ready), upstream, code, upstream))
                    return
                landed = {rel for rel in ready if _local_size(p["dest"], rel) == self.want[rel]}
                if landed and self.first_file_at is None:
                    self.first_file_at = round(time.time(), 1)
                self.done |= landed
                last_new = time.monotonic()
                continue
            waited = time.monotonic() - last_new
            if waited > p["stall_timeout"]:
                pending = sorted(rel for rel in self.want if rel not in self.done)
                self.error = ("%s completed no further file in %d s (model_weights_follow_timeout); "
                              "still waiting for %d file(s), first %s%s. Its own staging failed "
                              "or stalled: fix %s, then re-run" % (
                                  upstream, p["stall_timeout"], len(pending), pending[0],
                                  " (listing it: %s)" % why_waiting if why_waiting else "",
                                  upstream))
                return
            self.stop.wait(p["poll"])

    def kill(self):
        self.stop.set()
        for proc in self.procs:
            kill_group(proc)


def _prewarm(files, dest, counter, stop, log_path):
    """Read every file once; counter[0] is the bytes read so far. Errors go to the log."""
    try:
        for entry in files:
            with open(os.path.join(dest, entry["path"]), "rb", buffering=0) as f:
                while not stop.is_set():
                    block = f.read(16 << 20)
                    if not block:
                        break
                    counter[0] += len(block)
    except OSError as exc:
        with open(log_path, "w") as log:
            log.write("prewarm: %s\n" % exc)


def _tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def main():
    module = AnsibleModule(
        argument_spec={
            "method": {"type": "str", "required": True, "choices": ["hub", "rsync", "follow", "prewarm"]},
            "dest": {"type": "path", "required": True},
            "files": {"type": "list", "elements": "dict", "required": True},
            "work_dir": {"type": "path", "required": True},
            "timeout": {"type": "float", "default": 86400},
            "hf_cli": {"type": "path"},
            "repo_id": {"type": "str"},
            "revision": {"type": "str"},
            "endpoint": {"type": "str", "default": ""},
            "token_file": {"type": "path", "default": ""},
            "max_workers": {"type": "int", "default": 8},
            "source": {"type": "str"},
            "streams": {"type": "int", "default": 4},
            "upstream": {"type": "str", "default": ""},
            "stall_timeout": {"type": "float", "default": 1800},
            "poll": {"type": "float", "default": 2},
        },
        required_if=[("method", "hub", ("hf_cli", "repo_id", "revision")),
                     ("method", "rsync", ("source",)), ("method", "follow", ("source",))],
        supports_check_mode=False,
    )
    p = module.params
    os.makedirs(p["work_dir"], mode=0o700, exist_ok=True)
    os.makedirs(p["dest"], mode=0o755, exist_ok=True)
    log_path = os.path.join(p["work_dir"], p["method"] + ".log")
    total = sum(int(e["size"]) for e in p["files"])
    start = time.monotonic()
    stop = threading.Event()
    counter = [0]

    if os.path.exists(log_path):
        os.unlink(log_path)
    job = Job(p["timeout"], started=start)
    follower = None
    if p["method"] == "follow":
        log = open(log_path, "w")
        follower = Follower(p, log)
        worker = threading.Thread(target=follower.run)
        worker.start()

        def measure():
            return min(bytes_on_disk(p["dest"]), total)

        def running():
            return worker.is_alive()

        def kill():
            follower.kill()

        def failed():
            return bool(follower.error)

        def fields():
            return {"upstream": p["upstream"], "files_done": len(follower.done),
                    "files_total": len(follower.want), "first_file_at": follower.first_file_at}
    elif p["method"] == "prewarm":
        worker = threading.Thread(target=_prewarm,
                                  args=(p["files"], p["dest"], counter, stop, log_path))
        worker.start()

        def measure():
            return counter[0]

        def running():
            return worker.is_alive()

        def kill():
            stop.set()

        def failed():
            return os.path.exists(log_path)
    else:
        with open(log_path, "w") as log:
            for argv, env in _commands(p, p["work_dir"]):
                job.start(argv, log, env=env)
        running, kill = job.running, job.kill

        def measure():
            return min(bytes_on_disk(p["dest"]), total)

        def failed():
            return job.failed

    if follower is None:
        def fields():
            return {}

    def now():
        return dict(progress(measure(), total, time.monotonic() - start, start_done), **fields())

    start_done = measure()
    report = Progress(p["work_dir"], digits=1, method=p["method"],
                      **dict(progress(start_done, total, 0, start_done), **fields()))
    timed_out = job.supervise(running, kill, tick=TICK, on_tick=lambda: report.write(**now()))
    if follower is not None:
        worker.join()
        log.close()
    last = now()
    seconds = round(time.monotonic() - start, 1)
    if timed_out or failed():
        why = "timed out after %d s" % p["timeout"] if timed_out else "failed"
        if follower is not None:
            why += " following %s" % (p["upstream"] or p["source"])
            why += ": %s" % follower.error if follower.error and not timed_out else ""
        report.write(state="failed", **last)
        module.fail_json(msg="%s %s; the log's tail:\n%s" % (p["method"], why, _tail(log_path)),
                         seconds=seconds, progress=last, log=log_path)
    report.write(state="finished", **last)
    module.exit_json(changed=True, seconds=seconds, progress=last, log=log_path)


if __name__ == "__main__":
    main()
