"""Run the SGLang simulator as a real process on a free port, and talk HTTP to it."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SIM_SRC = Path(__file__).resolve().parents[2] / "tools" / "sglang_sim" / "src"


# Each pytest-xdist worker takes ports of its own, below the kernel's ephemeral range
# (32768-60999 on Linux): a port the kernel picks for bind(0) can be picked again for
# another worker, or as an outgoing connection's source port, before the server meant for
# it binds it (two workers once had a fake server answer a simulator's requests). Worker N
# of W gets the ports that leave N when divided by W, in random order (some tests want
# two ports far apart: SGLang derives ports from --port), and never one twice.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_PORTS = list(range(10000 + _WORKER, 32768, _WORKERS))
random.shuffle(_PORTS)
_next_ports = iter(_PORTS)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on and no other worker will be given."""
    for port in _next_ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken by something outside the tests
            return port
    raise RuntimeError(f"worker {_WORKER} used all {len(_PORTS)} of its ports")


class Sim:
    def __init__(self, argv: list[str], env: dict[str, str] | None = None,
                 api_key: str = "") -> None:
        self.port = free_port()
        self.api_key = api_key
        full_env = {**os.environ, "PYTHONPATH": str(SIM_SRC), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sglang_sim.launch_server", "--host", "127.0.0.1",
             "--port", str(self.port), *argv],
            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def request(self, path: str, body: dict | None = None, key: str | None = None,
                timeout: float = 30) -> tuple[int, bytes]:
        key = self.api_key if key is None else key
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def json(self, path: str, body: dict | None = None) -> dict:
        status, raw = self.request(path, body)
        assert status == 200, raw
        return json.loads(raw)

    def health(self) -> int | None:
        try:
            return self.request("/health", timeout=2)[0]
        except (urllib.error.URLError, ConnectionError, OSError):
            return None  # port closed: still loading

    def wait_ready(self, budget: float = 15) -> None:
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline:
            if self.health() == 200:
                return
            assert self.proc.poll() is None, self.proc.stdout.read()
            time.sleep(0.05)
        raise AssertionError("simulator never became healthy")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=10)
        finally:
            self.proc.stdout.close()
