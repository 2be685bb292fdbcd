#!/usr/bin/python
"""Ansible module: one long weights job (Hub download, copy, or prewarm) with progress."""
from __future__ import annotations

DOCUMENTATION = r"""
module: model_weights_run
short_description: Download, copy or prewarm model weights, writing progress as it goes
description:
  - C(method=hub) runs the hf CLI (huggingface_hub) into C(dest); it resumes interrupted
    files itself. The token reaches it as HF_TOKEN_PATH, a file, never on a command line.
  - C(method=rsync) copies C(files) from C(source) (an rsync daemon URL of a peer, or a
    local mirror path) in C(streams) parallel rsync processes; C(--append-verify) resumes a
    file an earlier copy left short.
  - C(method=prewarm) reads C(files) once, so the page cache holds them before the server
    loads them.
  - Meant to be started with C(async). Every few seconds it writes C(work_dir)/progress.json
    (state, done_bytes, total_bytes, rate_bytes, eta, elapsed); the job's output goes to
    C(work_dir)/<method>.log. Killed and failed at C(timeout) seconds.
options:
  method: {description: What to run., type: str, required: true, choices: [hub, rsync, prewarm]}
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
  source: {description: rsync source directory or rsync:// URL, ending in / (method=rsync)., type: str}
  streams: {description: Parallel rsync processes (method=rsync)., type: int, default: 4}
"""

EXAMPLES = r"""
- name: Download from the Hub in the background
  model_weights_run:
    method: hub
    dest: "{{ __model_weights_dir }}"
    files: "{{ __model_weights_manifest.files }}"
    work_dir: /var/tmp/model-weights
    hf_cli: /opt/model-weights/venv/bin/hf
    repo_id: "{{ model_weights_repo_id }}"
    revision: "{{ model_weights_revision }}"
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

import json
import os
import subprocess
import threading
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.model_weights import bytes_on_disk, progress, split_streams

TICK = 2.0


def _write(work_dir, state, **fields):
    tmp = os.path.join(work_dir, "progress.json.tmp")
    with open(tmp, "w") as f:
        json.dump(dict(fields, state=state), f)
    os.replace(tmp, os.path.join(work_dir, "progress.json"))


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
    commands = []
    for i, paths in enumerate(split_streams(p["files"], p["streams"])):
        listing = os.path.join(lists_dir, "stream-%d.txt" % i)
        with open(listing, "w") as f:
            f.write("\n".join(paths) + "\n")
        argv = ["rsync", "--recursive", "--times", "--append-verify", "--files-from", listing,
                "--timeout", "600", p["source"], p["dest"] + "/"]
        commands.append((argv, None))
    return commands


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
            "method": {"type": "str", "required": True, "choices": ["hub", "rsync", "prewarm"]},
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
        },
        required_if=[("method", "hub", ("hf_cli", "repo_id", "revision")),
                     ("method", "rsync", ("source",))],
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
    procs = []
    if p["method"] == "prewarm":
        worker = threading.Thread(target=_prewarm,
                                  args=(p["files"], p["dest"], counter, stop, log_path))
        worker.start()

        def measure():
            return counter[0]

        def running():
            return worker.is_alive()

        def failed():
            return os.path.exists(log_path)
    else:
        with open(log_path, "w") as log:
            procs = [subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
                     for argv, env in _commands(p, p["work_dir"])]

        def measure():
            return min(bytes_on_disk(p["dest"]), total)

        def running():
            return any(proc.poll() is None for proc in procs)

        def failed():
            return any(proc.returncode for proc in procs)

    start_done = measure()
    last = progress(start_done, total, 0, start_done)
    _write(p["work_dir"], "running", method=p["method"], **last)
    timed_out = False
    next_write = start + TICK
    while running():
        if time.monotonic() - start > p["timeout"]:
            timed_out = True
            stop.set()
            for proc in procs:
                proc.kill()
            break
        time.sleep(0.2)
        if time.monotonic() >= next_write:
            next_write += TICK
            last = progress(measure(), total, time.monotonic() - start, start_done)
            _write(p["work_dir"], "running", method=p["method"], **last)
    for proc in procs:
        proc.wait()
    last = progress(measure(), total, time.monotonic() - start, start_done)
    seconds = round(time.monotonic() - start, 1)
    if timed_out or failed():
        why = "timed out after %d s" % p["timeout"] if timed_out else "failed"
        _write(p["work_dir"], "failed", method=p["method"], **last)
        module.fail_json(msg="%s %s; the log's tail:\n%s" % (p["method"], why, _tail(log_path)),
                         seconds=seconds, progress=last, log=log_path)
    _write(p["work_dir"], "finished", method=p["method"], **last)
    module.exit_json(changed=True, seconds=seconds, progress=last, log=log_path)


if __name__ == "__main__":
    main()
