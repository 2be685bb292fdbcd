"""The watchdog of every server: its decision function, then the real program against
loopback probe servers (two ranks, or one: a single-node server) and a fake systemctl
that records its calls."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ROOT, load_file

SCRIPT = ROOT / "roles" / "sglang_service" / "files" / "sglang_group_watchdog.py"
watchdog = load_file("sglang_group_watchdog", SCRIPT)


def run_probes(rounds, failures=3):
    """Feed rounds of per-rank health to decide(); return the actions taken."""
    watch, actions = watchdog.Watch(), []
    for healthy in rounds:
        watch, action = watchdog.decide(watch, healthy, failures)
        actions.append(action)
    return watch, actions


UP, RANK1_DOWN = [True, True], [True, False]


def test_a_starting_group_is_never_restarted():
    watch, actions = run_probes([[False, False]] * 10 + [RANK1_DOWN] * 10)
    assert not watch.armed
    assert "restart" not in actions


def test_arms_once_every_rank_is_healthy_at_once():
    watch, actions = run_probes([RANK1_DOWN, [False, True], UP])
    assert actions == ["", "", "arm"]
    assert watch.armed


def test_restarts_after_n_consecutive_failures():
    _, actions = run_probes([UP] + [RANK1_DOWN] * 3)
    assert actions == ["arm", "", "", "restart"]


@pytest.mark.parametrize("rounds", [
    [UP, RANK1_DOWN, UP] * 5,                            # single blips
    [UP, RANK1_DOWN, RANK1_DOWN, UP, RANK1_DOWN, RANK1_DOWN, UP],  # never 3 in a row
    [UP, RANK1_DOWN, [False, True], RANK1_DOWN, UP],     # different ranks, 1 each
])
def test_blips_below_the_threshold_do_not_restart(rounds):
    _, actions = run_probes(rounds)
    assert "restart" not in actions


def test_its_own_rank_counts_too():
    _, actions = run_probes([UP] + [[False, True]] * 3)
    assert actions[-1] == "restart"


def test_disarmed_after_a_restart_until_the_group_is_whole_again():
    watch, actions = run_probes([UP] + [RANK1_DOWN] * 3 + [[False, False]] * 20)
    assert actions.count("restart") == 1
    assert not watch.armed
    watch, action = watchdog.decide(watch, UP, 3)
    assert (watch.armed, action) == (True, "arm")
    assert watch.misses == (0, 0)


def test_rearmed_group_restarts_again_on_a_new_failure():
    _, actions = run_probes(([UP] + [RANK1_DOWN] * 3) * 2)
    assert actions.count("restart") == 2


# A single-node server is a group of one (issue 14, fault 6: before, it had no watchdog).

def test_a_single_node_server_is_restarted_after_n_failed_probes_once_healthy():
    _, actions = run_probes([[True]] + [[False]] * 3)
    assert actions == ["arm", "", "", "restart"]


def test_a_single_node_server_that_never_was_healthy_is_left_to_systemd():
    watch, actions = run_probes([[False]] * 20)
    assert not watch.armed and "restart" not in actions


# ---- the real program -------------------------------------------------------------------

class Rank:
    """A loopback /health that answers 200 or 503 as the test says."""

    def __init__(self):
        rank = self
        self.healthy = True
        self.hung = threading.Event()   # set: answers nothing, like a stuck scheduler
        self.paths = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                rank.paths.append(self.path)
                if rank.hung.is_set():
                    time.sleep(5)
                self.send_response(200 if rank.healthy else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def group(tmp_path, request):
    ranks = [Rank() for _ in range(getattr(request, "param", 2))]
    calls = tmp_path / "systemctl.calls"
    fake = tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    config = tmp_path / "watchdog.json"
    config.write_text(json.dumps({"urls": [r.url for r in ranks], "rank": 0,
                                  "unit": "sglang.service", "interval": 0.2,
                                  "failures": 3, "timeout": 0.5}))
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    processes = []

    def start():
        processes.append(subprocess.Popen(
            [sys.executable, str(SCRIPT), str(config)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        return processes[-1]

    yield ranks, calls, start
    for process in processes:
        process.kill()
        process.wait()
    for rank in ranks:
        rank.server.shutdown()


def restarts(calls):
    return calls.read_text().splitlines() if calls.exists() else []


def wait_until(done, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


def restarted_once_after_more_probes(calls, rank, probes=5):
    """The watchdog logs 'restarting' before it runs systemctl: wait for that call to
    land, then for `probes` more probes of the failing rank, and say how many restarts."""
    wait_until(lambda: restarts(calls), "systemctl call")
    seen = len(rank.paths)
    wait_until(lambda: len(rank.paths) >= seen + probes, f"{probes} more probes")
    return restarts(calls) == ["--no-block restart sglang.service"]


class Output:
    """The program's lines as they come (read by a thread), so a test waits for what the
    program says rather than sleeping a guess: these machines are too busy for guesses."""

    def __init__(self, process):
        self.lines = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(process.stdout))
        self.thread.start()

    def wait_for(self, text, count=1, timeout=60):
        deadline = time.monotonic() + timeout
        while sum(text in line for line in list(self.lines)) < count:
            assert time.monotonic() < deadline, f"no {text!r} x{count} in {self.lines}"
            time.sleep(0.05)

    def text(self):
        self.thread.join(timeout=10)
        return "".join(self.lines)


def test_program_restarts_its_unit_once_when_a_rank_fails(group):
    ranks, calls, start = group
    process = start()
    out = Output(process)
    out.wait_for("armed: all 2 ranks healthy")
    ranks[1].healthy = False
    out.wait_for("restarting sglang.service")
    assert restarted_once_after_more_probes(calls, ranks[1])
    ranks[1].healthy = True
    out.wait_for("armed: all 2 ranks healthy", count=2)   # whole again: armed again
    process.terminate()                                   # SIGTERM: a clean stop
    process.wait(timeout=5)
    text = out.text()
    assert process.returncode == 0, text
    assert text.count("armed: all 2 ranks healthy") == 2, text
    assert f"restarting sglang.service: rank 1 {ranks[1].url} (HTTP 503) failed 3" in text, text
    assert text.rstrip().endswith("stopped"), text


def test_program_never_restarts_a_group_it_has_not_seen_whole(group):
    ranks, calls, start = group
    ranks[1].healthy = False                              # before the first probe
    process = start()
    wait_until(lambda: len(ranks[1].paths) >= 7, "7 probes of the failing rank")
    assert restarts(calls) == []
    process.terminate()
    out, _ = process.communicate(timeout=5)
    assert "waiting for every rank to be healthy: rank 1" in out, out
    assert "armed:" not in out, out


@pytest.mark.parametrize("group", [1], indirect=True)
def test_program_restarts_a_hung_single_node_server_once(group):
    """One rank that stops answering (its process alive: systemd sees nothing) is
    restarted after 3 probes time out, once, and the watchdog re-arms when it is back."""
    (server,), calls, start = group
    process = start()
    out = Output(process)
    out.wait_for("armed: 1 rank healthy")
    server.hung.set()
    out.wait_for("restarting sglang.service")
    assert restarted_once_after_more_probes(calls, server, probes=3)
    server.hung.clear()
    out.wait_for("armed: 1 rank healthy", count=2)
    process.terminate()
    process.wait(timeout=5)
    text = out.text()
    assert "watching 1 rank of sglang.service" in text, text
    assert f"restarting sglang.service: rank 0 {server.url} (timed out) failed 3" in text, text


def test_a_group_whose_rank_0_says_200_on_health_but_cannot_generate_is_restarted(tmp_path):
    """Issue 16, against two real simulator ranks (rank 1 serves only /health): with
    SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION=false SGLang's /health answers 200 without
    generating, so a stuck scheduler on rank 0 still says 200 there. The watchdog probes
    rank 0 with the pinned version's generation probe (what vars/main.yml gives it), so
    the group is restarted all the same."""
    from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_bringup import (
        generation_probe)
    from sim_process import Sim
    env = {"SGLANG_HEALTH_CHECK_TIMEOUT": "1", "SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION": "false"}
    base = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "16",
            "--nnodes", "2", "--dist-init-addr", "127.0.0.1:50000", "--trust-remote-code"]
    sims = [Sim(base + ["--node-rank", str(rank)], env=env) for rank in (0, 1)]
    calls, fake = tmp_path / "systemctl.calls", tmp_path / "bin" / "systemctl"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(0o755)
    urls = [f"http://127.0.0.1:{sims[0].port}{generation_probe('0.5.6.post1')}",
            f"http://127.0.0.1:{sims[1].port}/health"]
    config = tmp_path / "watchdog.json"
    config.write_text(json.dumps({"urls": urls, "rank": 1, "unit": "sglang.service",
                                  "interval": 0.3, "failures": 3, "timeout": 3}))
    process = None
    try:
        for sim in sims:
            sim.wait_ready()
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(config)], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"})
        out = Output(process)
        out.wait_for("armed: all 2 ranks healthy")
        sims[0].proc.send_signal(signal.SIGUSR1)            # the scheduler hangs
        out.wait_for("restarting sglang.service", timeout=60)
        assert sims[0].health() == 200                      # /health still says 200
        # The watchdog says so before it runs systemctl: give the call time to land.
        wait_until(lambda: restarts(calls), "systemctl call")
        assert restarts(calls) == ["--no-block restart sglang.service"]
        process.terminate()
        process.wait(timeout=10)
        text = out.text()
        assert f"restarting sglang.service: rank 0 {urls[0]} (HTTP 503) failed 3" in text, text
    finally:
        if process and process.poll() is None:
            process.kill()
        for sim in sims:
            sim.stop()
