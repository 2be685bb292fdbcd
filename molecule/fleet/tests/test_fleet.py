"""The fleet after converge: traffic through the router, a rollout under load, a rollout
that fails its gate and rolls back, a dry run, and a killed rank. Runs from verify.yml.

Two servers of two nodes (kimi_demo_pair1: fleet-1 rank 0, fleet-2 rank 1; pair2:
fleet-3, fleet-4) behind sglang-router on fleet-1 (inventory host fleet-router).
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
# The directory: Molecule's generated file plus the linked group_vars and router host.
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)
KEY = "demo-key-not-a-secret"
ROUTER_PORT = 30080
PAIRS = {"kimi_demo_pair1": ["fleet-1", "fleet-2"], "kimi_demo_pair2": ["fleet-3", "fleet-4"]}
# The demo's simulator settings (inventories/demo/group_vars/all/sglang_service.yml).
DEMO_ENV = {"SGLANG_SIM_LOAD_SECONDS": 2, "SGLANG_SIM_WARMUP_SECONDS": 2,
            "SGLANG_SIM_GSM8K": "/var/cache/sglang-verify/gsm8k-test.jsonl"}


def playbook(*names: str, options: tuple[str, ...] = (),
             extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run the toolkit's playbooks NAMES, in order, in one ansible-playbook call."""
    argv = ["ansible-playbook", "-i", INVENTORY,
            *(str(PROJECT / "playbooks" / name) for name in names), *options]
    if extra:
        argv += ["-e", json.dumps(extra)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1500)


def sh(host: str, command: str) -> str:
    return subprocess.run(["podman", "exec", host, "sh", "-c", command], check=True,
                          capture_output=True, text=True).stdout


@functools.cache
def address(host: str) -> str:
    """The container's address: fixed for the scenario's life (each request would otherwise
    spend a `podman inspect`, which under Traffic kept a CPU busy)."""
    out = subprocess.run(["podman", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                          host], check=True, capture_output=True, text=True).stdout
    return out.strip()


def started(host: str) -> int:
    """When sglang.service last entered 'active' (monotonic µs): changes on every restart."""
    out = sh(host, "systemctl show sglang.service -p ActiveEnterTimestampMonotonic --value")
    return int(out.strip())


def unit(host: str) -> str:
    return sh(host, "cat /etc/systemd/system/sglang.service")


def healthy(host: str) -> bool:
    return sh(host, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:30000/health || true") == "200"


def router(path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{address('fleet-1')}:{ROUTER_PORT}{path}", data=data,
                                 headers={"Authorization": f"Bearer {KEY}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, {}


def ok(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stdout[-6000:]


class Traffic:
    """Chat requests through the router from 4 threads, each ~4 a second, until stopped
    (bounded: 20 min). A group out of the router or restarting for even half a second
    would fail some of them; a faster stream only costs the two test cores."""

    def __init__(self) -> None:
        self.statuses: list[int | str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(4)]

    def _run(self) -> None:
        deadline = time.monotonic() + 1200
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                status, _ = router("/v1/chat/completions", {
                    "model": "moonshotai/Kimi-K2-Instruct", "max_tokens": 16,
                    "messages": [{"role": "user", "content": "What is 6 times 7?"}]})
            except OSError as exc:  # refused or reset: a failed request all the same
                status = type(exc).__name__
            self.statuses.append(status)
            time.sleep(0.25)

    def __enter__(self) -> "Traffic":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    @property
    def failed(self) -> list:
        return [s for s in self.statuses if s != 200]


def test_the_router_has_every_group_rank_0_as_a_healthy_worker():
    status, listing = router("/workers")
    assert status == 200
    workers = {w["url"]: w["is_healthy"] for w in listing["workers"]}
    assert workers == {"http://fleet-1:30000": True, "http://fleet-3:30000": True}


def test_the_api_key_is_in_no_command_line_or_unit_on_the_router_host():
    assert sh("fleet-1", "systemctl is-active sglang-router.service").strip() == "active"
    assert KEY not in sh("fleet-1", "ps -eo args")
    assert KEY not in sh("fleet-1", "systemctl cat sglang-router.service sglang.service")


def test_serving_and_routing_again_changes_nothing():
    """The scenario's idempotence check. site.yml is serve.yml, router.yml and verify.yml,
    and verify.yml changes nothing managed (its reports are changed_when false), so the
    second run is the first two: Molecule's own idempotence step would re-run the smoke
    checks and the GSM8K gate of every server for no new coverage."""
    run = playbook("serve.yml", "router.yml")
    ok(run)
    recap = dict(re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", run.stdout, re.MULTILINE))
    assert set(recap) >= {"fleet-1", "fleet-2", "fleet-3", "fleet-4", "fleet-router"}, recap
    assert set(recap.values()) == {"0"}, run.stdout[-6000:]


def test_a_dry_run_shows_which_groups_would_change_and_touches_nothing():
    before = {h: (started(h), unit(h)) for pair in PAIRS.values() for h in pair}
    run = playbook("rollout.yml", options=("--check", "--diff"),
                   extra={"sglang_service_max_running_requests": 32})
    ok(run)
    assert "[kimi_demo_pair1] [kimi_demo_pair2]" in run.stdout
    assert "+    --max-running-requests 32" in run.stdout
    assert {h: (started(h), unit(h)) for pair in PAIRS.values() for h in pair} == before


def test_a_flag_rolls_group_by_group_with_zero_failed_requests():
    before = {h: started(h) for pair in PAIRS.values() for h in pair}
    with Traffic() as traffic:
        run = playbook("rollout.yml", extra={"sglang_service_max_running_requests": 48})
        time.sleep(2)
    ok(run)
    assert len(traffic.statuses) > 50 and traffic.failed == [], traffic.failed[:10]
    for host, then in before.items():
        assert started(host) > then, f"{host} did not restart"
        assert "--max-running-requests 48" in unit(host)
    # One group at a time: pair2 restarted only after pair1 was back.
    assert min(started(h) for h in PAIRS["kimi_demo_pair2"]) > max(started(h) for h in PAIRS["kimi_demo_pair1"])
    assert "kimi_demo_pair1: rolled. kimi_demo_pair2: rolled." in run.stdout
    assert sh("fleet-1", "test -e /etc/sglang/rollback && echo kept || echo gone").strip() == "gone"


def test_a_rollout_that_fails_its_gate_rolls_back_the_first_group_and_stops():
    untouched = {h: (started(h), unit(h)) for h in PAIRS["kimi_demo_pair2"]}
    previous = {h: unit(h) for h in PAIRS["kimi_demo_pair1"]}
    # The new configuration answers GSM8K right 30% of the time: below the 0.93 gate.
    bad_env = dict(DEMO_ENV, SGLANG_SIM_ACCURACY="0.3")
    run = playbook("rollout.yml", extra={"sglang_service_max_running_requests": 40,
                                         "sglang_service_extra_env": bad_env})
    assert run.returncode != 0
    assert "Rollout stopped at group kimi_demo_pair1, which was rolled back" in run.stdout
    assert "is below the instruct threshold 0.930" in run.stdout
    for host, text in previous.items():
        assert unit(host) == text and healthy(host), host
    assert {h: (started(h), unit(h)) for h in PAIRS["kimi_demo_pair2"]} == untouched
    status, listing = router("/workers")
    assert {w["url"] for w in listing["workers"] if w["is_healthy"]} == {
        "http://fleet-1:30000", "http://fleet-3:30000"}


def test_a_killed_rank_restarts_its_group_without_a_human():
    rank0_before = started("fleet-3")
    other_before = started("fleet-1")
    sh("fleet-4", "systemctl kill --signal=SIGKILL sglang.service")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if started("fleet-3") > rank0_before and healthy("fleet-3") and healthy("fleet-4"):
            break
        time.sleep(5)
    assert started("fleet-3") > rank0_before, "rank 0 was not restarted with its group"
    assert healthy("fleet-3") and healthy("fleet-4")
    assert started("fleet-1") == other_before, "the other group must not restart"
