"""roles/sglang_service/files/sglang-launch.py: SGLang's output reaches the journal with
every secret masked, whatever SGLang logs (issue 14, fault 3)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, load_file
from sim_process import SIM_SRC, free_port

LAUNCHER = ROOT / "roles" / "sglang_service" / "files" / "sglang-launch.py"
launch = load_file("sglang_launch_wrapper", LAUNCHER)
KEY = "sk-k2-'quoted'\\and\"more\"-0123456789"


def test_every_form_of_a_secret_is_masked_whatever_the_chunking():
    text = (f"server_args=ServerArgs(api_key={KEY!r}) json={json.dumps({'k': KEY})} "
            f"raw={KEY}\r progress 10%\r").encode()
    for cut in range(1, len(text)):
        redactor = launch.Redactor([KEY])
        out = redactor.feed(text[:cut]) + redactor.feed(text[cut:]) + redactor.flush()
        assert out.count(b"<redacted>") == 3, cut
        for form in launch.forms(KEY):
            assert form not in out


def test_output_is_held_back_only_while_it_could_begin_a_secret():
    redactor = launch.Redactor(["s3cret"])
    assert redactor.feed(b"loading 10%\r") == b"loading 10%\r"  # a progress bar flows
    assert redactor.feed(b"key s3c") == b"key "
    assert redactor.feed(b"ond") == b"s3cond"
    assert redactor.flush() == b""


def test_secrets_are_every_string_of_the_config_file(tmp_path):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f'# managed\napi-key: {json.dumps(KEY)}\nport: 1\n')
    assert launch.read_secrets(str(secrets)) == [KEY]
    with pytest.raises(SystemExit, match="cannot read the secrets file"):
        launch.read_secrets(str(tmp_path / "missing"))


def _start(tmp_path, *flags, env=None):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(f"api-key: {json.dumps(KEY)}\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--secrets-file", str(secrets), "--",
         "-m", "sglang_sim.launch_server", "--model-path", "moonshotai/Kimi-K2-Thinking",
         "--host", "127.0.0.1", "--port", str(port), "--config", str(secrets), *flags],
        env={**os.environ, "PYTHONPATH": str(SIM_SRC), "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, port


def _wait_ready(proc, port):
    import urllib.request
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the server never became healthy")


def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def test_the_server_runs_under_the_launcher_and_its_log_holds_no_key(tmp_path):
    proc, port = _start(tmp_path, env={"HF_TOKEN": "hf_tokenvalue123"})
    _wait_ready(proc, port)
    [child] = _children(proc.pid)
    for pid in (proc.pid, child):  # the key is in neither command line
        assert KEY.encode() not in open(f"/proc/{pid}/cmdline", "rb").read()
    proc.send_signal(signal.SIGTERM)  # systemd's stop: passed on, the server drains
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0
    assert b"server_args=ServerArgs(" in out  # the simulator logged, as SGLang does...
    assert b"api_key='<redacted>'" in out     # ...and the key was masked
    assert b"masking 2 secret(s)" in out      # the key and the Hub token
    for form in launch.forms(KEY):
        assert form not in out
    assert b"Drained; exiting." in out


def test_the_launcher_exits_as_the_server_did(tmp_path):
    proc, _ = _start(tmp_path, "--reasoning-parser", "kimi-k2")
    out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 2  # argparse's exit, passed through
    assert b"invalid choice: 'kimi-k2'" in out


def test_a_server_killed_by_a_signal_ends_the_launcher_by_that_signal(tmp_path):
    proc, port = _start(tmp_path)
    _wait_ready(proc, port)
    [child] = _children(proc.pid)
    os.kill(child, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
