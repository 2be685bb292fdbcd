"""The gateway in prefill/decode (PD) mode: the role's launcher reading typed workers from
its worker file, and the sglang_router_workers module changing a running PD gateway's
workers through its /workers API (worker_type and bootstrap_port in the POST body).

The real-gateway tests start the role's launcher under sglang-router 0.3.2 and smg 1.13.0
in front of the simulator's two halves (tools/sglang_sim, PD mode); like
tests/unit/test_sglang_router.py they need SGLANG_ROUTER_PYTHON or SMG_PYTHON (`make unit`
sets both). The gateway's output goes to a file that every failure shows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request

import pytest
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_router as api

from sim_process import SIM_SRC, Sim, free_port
from test_sglang_router import GATEWAY_PYTHONS, KEY, LAUNCHER, _installed, launcher

MODEL = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "8",
         "--tool-call-parser", "kimi_k2", "--api-key", KEY]
QUESTION = {"text": "Question: What is 15% of 240?\nAnswer:",
            "sampling_params": {"max_new_tokens": 32, "temperature": 0}}


# ---------------------------------------------------------------- launcher
def test_launcher_turns_typed_workers_into_the_gateways_pd_flags(tmp_path):
    (tmp_path / "workers").write_text(
        "# managed\nprefill http://10.0.3.1:30000 8998  # node 0\n\n"
        "decode http://10.0.4.1:30000\nprefill http://10.0.3.2:30000 8999\n")
    assert launcher.read_workers(str(tmp_path / "workers")) == ([], [
        "--prefill", "http://10.0.3.1:30000", "8998", "--decode", "http://10.0.4.1:30000",
        "--prefill", "http://10.0.3.2:30000", "8999"])


@pytest.mark.parametrize("content, message", [
    ("decode http://a:1 2\n", "workers:1: expected URL"),
    ("prefill\n", "workers:1: expected URL"),
    ("http://a:1 http://b:1\n", "workers:1: expected URL"),
])
def test_launcher_refuses_a_worker_line_it_cannot_read(tmp_path, content, message):
    (tmp_path / "workers").write_text(content)
    with pytest.raises(SystemExit, match=message):
        launcher.read_workers(str(tmp_path / "workers"))


def _fake_gateway(monkeypatch):
    started = {}
    entry = types.ModuleType("smg.launch_router")
    entry.parse_router_args = lambda flags: types.SimpleNamespace(flags=flags, api_key=None,
                                                                  worker_urls=[])
    entry.launch_router = lambda args: started.update(vars(args))
    monkeypatch.setitem(sys.modules, "smg", types.ModuleType("smg"))
    monkeypatch.setitem(sys.modules, "smg.launch_router", entry)
    return started


def _launch(tmp_path, workers, flags):
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "workers").write_text(workers)
    launcher.main(["--package", "smg", "--api-key-file", str(tmp_path / "key"),
                   "--worker-urls-file", str(tmp_path / "workers"), "--", *flags])


def test_launcher_hands_pd_workers_to_the_gateways_parser(tmp_path, monkeypatch):
    started = _fake_gateway(monkeypatch)
    _launch(tmp_path, "prefill http://p:1 8998\ndecode http://d:1\n",
            ["--pd-disaggregation", "--port", "1"])
    assert started == {"flags": ["--pd-disaggregation", "--port", "1", "--prefill", "http://p:1",
                                 "8998", "--decode", "http://d:1"],
                       "api_key": KEY, "worker_urls": []}


@pytest.mark.parametrize("workers, flags, message", [
    ("prefill http://p:1 8998\n", ["--port", "1"], "not started with --pd-disaggregation"),
    ("http://w:1\n", ["--pd-disaggregation"], "lists regular workers"),
])
def test_launcher_refuses_workers_of_the_other_mode(tmp_path, monkeypatch, workers, flags,
                                                    message):
    started = _fake_gateway(monkeypatch)
    with pytest.raises(SystemExit, match=message):
        _launch(tmp_path, workers, flags)
    assert started == {}


@pytest.mark.parametrize("flag", ["--prefill", "--decode"])
def test_launcher_refuses_pd_workers_among_the_flags(flag):
    with pytest.raises(SystemExit, match=f"refusing {flag}"):
        launcher.split_argv(["--api-key-file", "k", "--worker-urls-file", "w", "--",
                             "--pd-disaggregation", flag, "http://a:1"])


# ---------------------------------------------------------------- the real gateways
real_pd = pytest.mark.parametrize("package", [
    pytest.param(package, marks=pytest.mark.skipif(
        not _installed(package), reason=f"set {var} to a Python with the gateway installed"))
    for package, var in (("sglang_router", "SGLANG_ROUTER_PYTHON"), ("smg", "SMG_PYTHON"))])


class Gateway:
    """The role's launcher running a real gateway in PD mode, its output kept in a file."""

    def __init__(self, package, tmp_path, workers):
        self.log = tmp_path / f"{package}.log"
        (tmp_path / "key").write_text(KEY + "\n")
        (tmp_path / "workers").write_text(workers)
        self.port = free_port()
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [GATEWAY_PYTHONS[package], str(LAUNCHER), "--package", package,
                 "--api-key-file", str(tmp_path / "key"),
                 "--worker-urls-file", str(tmp_path / "workers"), "--",
                 "--pd-disaggregation", "--host", "127.0.0.1", "--port", str(self.port),
                 "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
                 "--health-check-interval-secs", "1", "--worker-startup-check-interval", "1",
                 "--log-level", "info"],
                env={**os.environ, "PYTHONPATH": str(SIM_SRC)},
                stdout=sink, stderr=subprocess.STDOUT)
        self.router = api.Router(f"http://127.0.0.1:{self.port}", KEY, 10)

    def tail(self):
        return self.log.read_text(errors="replace")[-4000:]

    def until(self, what, check, budget=120):
        """Poll check() until true; on timeout or the gateway's exit, fail with its log.
        Generous: CI runs the container suites beside this one."""
        deadline = time.monotonic() + budget
        while True:
            try:
                if check():
                    return
            except (api.RouterError, OSError):
                pass
            assert self.proc.poll() is None, f"the gateway exited ({what}):\n{self.tail()}"
            assert time.monotonic() < deadline, f"never {what}:\n{self.tail()}"
            time.sleep(0.3)

    def readiness(self):
        return self.router.call("GET", "/readiness")[0]

    def generate(self):
        status, body = self.router.call("POST", "/generate", QUESTION)
        return json.loads(body)["text"] if status == 200 else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def halves():
    """A prefill and a decode half, single node each, sharing the gateway's key."""
    bootstrap = free_port()
    prefill = Sim([*MODEL, "--disaggregation-mode", "prefill",
                   "--disaggregation-bootstrap-port", str(bootstrap)], api_key=KEY,
                  env={"SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": "5"})
    decode = Sim([*MODEL, "--disaggregation-mode", "decode"], api_key=KEY,
                 env={"SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "5"})
    for sim in (prefill, decode):
        sim.wait_ready()
    yield (f"http://127.0.0.1:{prefill.port}", bootstrap, f"http://127.0.0.1:{decode.port}")
    for sim in (prefill, decode):
        sim.stop()


@real_pd
def test_the_module_gives_a_pd_gateway_its_workers_through_the_api(package, halves,
                                                                   tmp_path):
    prefill, bootstrap, decode = halves
    wanted = [{"url": prefill, "worker_type": "prefill", "bootstrap_port": bootstrap},
              {"url": decode, "worker_type": "decode"}]
    # Started from the worker file with the prefill only: not ready without a decode.
    gateway = Gateway(package, tmp_path, f"prefill {prefill} {bootstrap}\n")
    try:
        gateway.until("listed the prefill from the worker file", lambda: [
            (w["url"], w["worker_type"], w["bootstrap_port"], w["healthy"])
            for w in gateway.router.workers()] == [(prefill, "prefill", bootstrap, True)])
        assert gateway.readiness() == 503, gateway.tail()
        # The decode comes through the API, typed: ready, and /generate goes through both.
        changed, _, after = api.converge(gateway.router, wanted, "present",
                                         worker_api_key=KEY, exclusive=True, timeout=60,
                                         interval=0.3)
        assert changed, gateway.tail()
        assert sorted((w["url"], w["worker_type"], w["healthy"]) for w in after) == sorted(
            [(prefill, "prefill", True), (decode, "decode", True)])
        gateway.until("ready with both kinds", lambda: gateway.readiness() == 200)
        gateway.until("served /generate through both halves",
                      lambda: "36" in (gateway.generate() or ""))
        assert not api.converge(gateway.router, wanted, "present", worker_api_key=KEY,
                                exclusive=True, timeout=60)[0]
        # The decode removed: no longer ready, nothing served; added back: serves again.
        changed, _, after = api.converge(gateway.router, [decode], "absent", timeout=60,
                                         interval=0.3)
        assert changed and [w["url"] for w in after] == [prefill], gateway.tail()
        gateway.until("unready without a decode", lambda: gateway.readiness() == 503)
        assert gateway.generate() is None
        api.converge(gateway.router, wanted, "present", worker_api_key=KEY, exclusive=True,
                     timeout=60, interval=0.3)
        gateway.until("served again", lambda: "36" in (gateway.generate() or ""))
    finally:
        gateway.stop()


@real_pd
def test_a_worker_registered_as_the_wrong_kind_is_replaced(package, halves, tmp_path):
    prefill, bootstrap, decode = halves
    # The prefill registered with a wrong bootstrap port (the gateway would tell the decode
    # a port nobody listens on) and the decode as a prefill.
    wrong = free_port()
    gateway = Gateway(package, tmp_path, f"prefill {prefill} {wrong}\nprefill {decode}\n")
    try:
        gateway.until("listed both from the worker file", lambda: sorted(
            (w["url"], w["worker_type"], w["bootstrap_port"], w["healthy"])
            for w in gateway.router.workers()) == sorted(
                [(prefill, "prefill", wrong, True), (decode, "prefill", None, True)]))
        wanted = [{"url": prefill, "worker_type": "prefill", "bootstrap_port": bootstrap},
                  {"url": decode, "worker_type": "decode"}]
        changed, _, after = api.converge(gateway.router, wanted, "present",
                                         worker_api_key=KEY, exclusive=True, timeout=60,
                                         interval=0.3)
        assert changed
        assert sorted((w["url"], w["worker_type"], w["bootstrap_port"]) for w in after) == \
            sorted([(prefill, "prefill", bootstrap), (decode, "decode", None)]), gateway.tail()
        gateway.until("served /generate", lambda: "36" in (gateway.generate() or ""))
    finally:
        gateway.stop()
