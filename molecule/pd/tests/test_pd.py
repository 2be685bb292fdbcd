"""The PD deployment after converge: the router in PD mode with both kinds of workers, the
converge's verify report (through the router, and each pool's health), a decode node cut
off from the prefill's bootstrap port failing verify.yml at once, a second converge that
changes nothing, the topology status.yml shows, the decode pool rolled under traffic with
zero failed requests, a decode rollout that fails its gate (rolled back, stopped, still
zero failed requests), a decode server and then the prefill rolled while pd-2 is cut off
from the bootstrap port (each kept out of its router and rolled back), the only prefill
server's rollout refused under the floor and rolled with the floor lowered,
a killed prefill process that restarts and serves again, and smg taking over from
sglang-router in PD mode.
Runs from verify.yml.

pd-1: the prefill server (pool pd_prefill) and sglang-router 0.3.2 in PD mode (inventory
host pd-router); pd-2 and pd-3: the decode pool (pd_decode), one server each.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

from scenario import (INVENTORY, PROJECT, address, block_port, changed_per_host,  # tests/lib
                      healthy, ok, playbook, sh, started, unit)
from traffic import Traffic, chat, request  # tests/lib, on the path: pytest.ini

KEY = "demo-key-not-a-secret"
MODEL = "moonshotai/Kimi-K2-Instruct"
ROUTER_PORT = 30080
PREFILL, DECODE = ["pd-1"], ["pd-2", "pd-3"]
SERVERS = PREFILL + DECODE
BOOTSTRAP_PORT = 8998
# The prefill's bootstrap server as the decode side is told it: at pd-1's cluster address,
# its container name here (the podman network's DNS).
BOOTSTRAP = f"pd-1:{BOOTSTRAP_PORT}"


def router_url() -> str:
    return f"http://{address('pd-1')}:{ROUTER_PORT}"


def router(path: str, body: dict | None = None) -> tuple[int, dict]:
    return request(f"{router_url()}{path}", KEY, body)


def chat_once() -> int | str:
    return chat(router_url(), KEY)


def latest_report(pattern: str, key: str, name: str) -> dict:
    """The newest report of this scenario that names NAME, from the scenario's own report
    folder (inventory/hosts.yml: Molecule names every scenario's inventory `inventory`)."""
    for path in sorted((PROJECT / "reports" / "molecule-pd" / Path(INVENTORY).name).glob(pattern),
                       reverse=True):
        data = json.loads(path.read_text())
        if name in {row.get(key) for row in data.get("hosts", data.get("groups", []))}:
            return data
    raise AssertionError(f"no {pattern} names {name}")


def test_each_server_runs_its_half_of_the_inventorys_command():
    prefill = unit("pd-1")
    assert "--disaggregation-mode prefill" in prefill
    assert f"--disaggregation-bootstrap-port {BOOTSTRAP_PORT}" in prefill
    assert "--disaggregation-ib-device mlx5_0" in prefill
    for host in DECODE:
        text = unit(host)
        assert "--disaggregation-mode decode" in text and "bootstrap-port" not in text
    # The prefill's bootstrap server listens, where the decode side will ask for the KV.
    assert sh("pd-1", f"curl -s -o /dev/null -w '%{{http_code}}' "
                      f"http://127.0.0.1:{BOOTSTRAP_PORT}/health") == "200"


def test_the_router_runs_in_pd_mode_with_both_kinds_of_workers():
    unit_text = sh("pd-1", "systemctl cat sglang-router.service")
    assert "--pd-disaggregation" in unit_text, unit_text
    assert sh("pd-1", "systemctl is-active sglang-router.service").strip() == "active"
    assert KEY not in sh("pd-1", "ps -eo args") and KEY not in unit_text
    status, listing = router("/workers")
    assert status == 200, listing
    text = json.dumps(listing)
    for host in SERVERS:
        assert f"http://{host}:30000" in text, listing
    assert chat_once() == 200


def test_the_converges_verify_checked_the_router_and_each_pools_health():
    rows = {row["host"]: row
            for row in latest_report("*/report.json", "host", "pd-router")["hosts"]}
    through = rows["pd-router"]
    assert through["passed"], through["problems"]
    assert through["smoke_passed"] == through["smoke_total"] >= 9
    assert through["gsm8k"]["questions"] == 200 and through["gsm8k"]["accuracy"] == 1.0
    for host in SERVERS:
        row = rows[host]
        assert row["passed"] and row["gsm8k"] is None, row["problems"]
        # Each reached the prefill's bootstrap server from its own node (pd-1: its own).
        assert [c["name"] for c in row["smoke"]][:3] == [
            "health", f"bootstrap {BOOTSTRAP}", "health_generate"]


def test_a_decode_node_cut_off_from_the_prefills_bootstrap_port_fails_verify_at_once():
    """pd-2's packets to pd-1's bootstrap port dropped (a firewall, the wrong interface):
    every request the router pairs across them would wait out SGLang's 300 s bootstrap
    timeout. verify.yml names the node and the address from pd-2 itself, within the probe's
    10 s, and pd-1's own probe still passes."""
    unblock = block_port("pd-1", BOOTSTRAP_PORT, source=address("pd-2"))
    try:
        # localhost writes the report: a limit keeps it.
        run = playbook("verify.yml", options=("--limit", "pd-1:pd-2:localhost"))
    finally:
        unblock()
    assert run.returncode != 0, run.stdout[-4000:]
    rows = {row["host"]: row for row in latest_report("*/report.json", "host", "pd-2")["hosts"]}
    assert set(rows) == {"pd-1", "pd-2"} and rows["pd-1"]["passed"], rows["pd-1"]["problems"]
    [failed] = [c for c in rows["pd-2"]["smoke"] if not c["passed"]]
    assert failed["name"] == f"bootstrap {BOOTSTRAP}" and "timed out" in failed["got"], failed
    assert f"pd-2: smoke check bootstrap {BOOTSTRAP} failed" in run.stdout, run.stdout[-4000:]


def test_a_second_converge_changes_nothing():
    before = {host: started(host) for host in SERVERS}
    run = playbook("serve.yml", "router.yml")
    ok(run)
    changed = changed_per_host(run)
    assert set(changed) >= {*SERVERS, "pd-router"}, run.stdout[-4000:]
    assert {h: n for h, n in changed.items() if n} == {}, run.stdout[-6000:]
    assert {host: started(host) for host in SERVERS} == before


def test_status_shows_the_topology():
    run = playbook("status.yml")
    ok(run)
    assert ("router pd-router (pd): prefill pool pd_prefill (1 server(s), 1 node(s)): pd-1 [pd-1]; "
            "decode pool pd_decode (2 server(s), 2 node(s)): pd-2 [pd-2], pd-3 [pd-3]"
            ) in " ".join(run.stdout.split()), run.stdout[-3000:]


def test_the_decode_pool_rolls_one_server_at_a_time_with_zero_failed_requests():
    before = {host: started(host) for host in SERVERS}
    with Traffic(router_url(), KEY) as traffic:
        run = playbook("rollout.yml", extra="sglang_service_max_running_requests="
                                            "{{ 48 if 'pd_decode' in group_names else none }}")
        time.sleep(2)
    ok(run)
    assert len(traffic.statuses) > 50 and traffic.failed == [], (
        len(traffic.statuses), traffic.failed[:10])
    for host in DECODE:
        assert started(host) > before[host], f"{host} did not restart"
        assert "--max-running-requests 48" in unit(host)
    assert started("pd-1") == before["pd-1"], "the prefill server must not restart"
    # One decode server at a time: pd-3 restarted only after pd-2 was back and gated.
    assert started("pd-3") > started("pd-2")
    assert "pd-2: rolled. pd-3: rolled." in run.stdout
    # Each decode server's gate ran the whole GSM8K gate: through the router, the only way
    # a decode half answers.
    rows = {r["group"]: r for r in latest_report("*-rollout/rollout.json", "group", "pd-2")["groups"]}
    for host in DECODE:
        assert rows[host]["gsm8k"]["questions"] == 200 and rows[host]["gsm8k"]["passed"], rows
    assert rows["pd-1"]["status"] == "unchanged"
    # Both are the router's decode workers again.
    assert all(f"http://{h}:30000" in json.dumps(router("/workers")[1]) for h in DECODE)


def test_a_decode_rollout_that_fails_its_gate_rolls_back_its_first_server_and_stops():
    """The decode pool rolled to servers that answer GSM8K right 30% of the time (below the
    0.93 gate; in PD the decode half writes the answer): pd-2 is rolled back to what it ran,
    pd-3 is never touched, and the router keeps serving throughout."""
    previous = {"pd-2": unit("pd-2")}
    untouched = {h: (started(h), unit(h)) for h in ("pd-1", "pd-3")}
    demo_env = yaml.safe_load(
        (PROJECT / "inventories/demo/group_vars/all/sglang_service.yml").read_text()
    )["sglang_service_extra_env"]
    with Traffic(router_url(), KEY) as traffic:
        run = playbook("rollout.yml", extra={
            "pd_test_env": demo_env, "pd_test_bad_env": {**demo_env, "SGLANG_SIM_ACCURACY": "0.3"},
            "sglang_service_extra_env":
                "{{ pd_test_bad_env if 'pd_decode' in group_names else pd_test_env }}",
            # What the decode pool runs since the rollout before this one.
            "sglang_service_max_running_requests": "{{ 48 if 'pd_decode' in group_names else none }}"})
        time.sleep(2)
    assert run.returncode != 0, run.stdout[-4000:]
    assert "Rollout stopped at group pd-2, which was rolled back" in run.stdout, run.stdout[-4000:]
    assert "is below the instruct threshold 0.930" in run.stdout
    assert len(traffic.statuses) > 50 and traffic.failed == [], (
        len(traffic.statuses), traffic.failed[:10])
    assert unit("pd-2") == previous["pd-2"] and healthy("pd-2")
    assert "SGLANG_SIM_ACCURACY" not in unit("pd-2")
    assert {h: (started(h), unit(h)) for h in ("pd-1", "pd-3")} == untouched
    rows = {r["group"]: r for r in latest_report("*-rollout/rollout.json", "group", "pd-2")["groups"]}
    assert rows["pd-2"]["status"] == "rolled back" and rows["pd-3"]["status"] == "not reached", rows
    # Both decode servers are the router's decode workers again.
    assert all(f"http://{h}:30000" in json.dumps(router("/workers")[1]) for h in DECODE)


def cut_off_rollout(extra: dict) -> subprocess.CompletedProcess:
    """rollout.yml while pd-2's packets to pd-1's bootstrap port are dropped."""
    unblock = block_port("pd-1", BOOTSTRAP_PORT, source=address("pd-2"))
    try:
        return playbook("rollout.yml", extra=extra)
    finally:
        unblock()


def kept_out_of_the_router(run: subprocess.CompletedProcess, host: str) -> None:
    """The rollout stopped at host's KV handshake check: rolled back, its gate never run,
    and named the path that did not answer."""
    assert run.returncode != 0, run.stdout[-4000:]
    text = " ".join(run.stdout.split())
    assert f"Rollout stopped at group {host}, which was rolled back: group | Stop unless every " \
           f"path of the KV handshake answered: pd-2 cannot reach the bootstrap server " \
           f"{BOOTSTRAP} (" in text, run.stdout[-4000:]
    assert f"so {host} does not go back in its router" in text
    rows = {r["group"]: r for r in latest_report("*-rollout/rollout.json", "group", host)["groups"]}
    assert rows[host]["status"] == "rolled back" and not rows[host].get("gsm8k"), rows


def test_a_decode_server_cut_off_from_the_prefills_bootstrap_port_is_kept_out_of_its_router():
    """pd-2, rolled while its packets to pd-1's bootstrap port are dropped: every request
    the router paired to it would wait out the 300 s bootstrap timeout, so the rollout
    checks the handshake's paths before it puts pd-2 back, stops there in seconds, and
    rolls pd-2 back."""
    previous = unit("pd-2")
    run = cut_off_rollout({"sglang_service_max_running_requests":
                           "{{ 44 if 'pd_decode' in group_names else none }}"})
    kept_out_of_the_router(run, "pd-2")
    assert unit("pd-2") == previous and healthy("pd-2")
    assert chat_once() == 200


PREFILL_CHANGE = {"sglang_service_max_running_requests": "{{ 40 if 'pd_prefill' in group_names "
                                                          "else 48 }}"}  # decode: as rolled


def test_rolling_the_only_prefill_server_is_refused_before_anything_changes():
    before = {host: (started(host), unit(host)) for host in SERVERS}
    run = playbook("rollout.yml", extra=PREFILL_CHANGE)
    assert run.returncode != 0, run.stdout[-4000:]
    assert ("the prefill pool pd_prefill has 1 server(s): rolling one would leave 0 serving, "
            "below sglang_rollout_min_serving_groups (1), which every pool keeps: add a prefill "
            "server to pd_prefill or lower the floor") in " ".join(run.stdout.split()), run.stdout[-4000:]
    assert {host: (started(host), unit(host)) for host in SERVERS} == before


def test_a_prefill_server_a_decode_node_cannot_reach_is_kept_out_of_its_router():
    """The same cut, met from the prefill's side: its rollout walks the path from every
    decode node (pd-2 and pd-3) to its bootstrap server, and stops at pd-2's."""
    previous = unit("pd-1")
    run = cut_off_rollout({**PREFILL_CHANGE, "sglang_rollout_min_serving_groups": 0})
    kept_out_of_the_router(run, "pd-1")
    assert f"pd-3 cannot reach" not in run.stdout
    assert unit("pd-1") == previous and healthy("pd-1")
    assert chat_once() == 200


def test_with_the_floor_lowered_the_prefill_server_rolls_and_rejoins_the_router():
    """Its own router takes it out, and back with its kind and bootstrap port: the decode
    side finds the prefill's KV through that port, so chat through the router proves it."""
    before = {host: started(host) for host in SERVERS}
    run = playbook("rollout.yml", extra={**PREFILL_CHANGE, "sglang_rollout_min_serving_groups": 0})
    ok(run)
    assert "pd-1: rolled." in run.stdout, run.stdout[-4000:]
    assert started("pd-1") > before["pd-1"] and "--max-running-requests 40" in unit("pd-1")
    assert {host: started(host) for host in DECODE} == {host: before[host] for host in DECODE}
    assert [chat_once() for _ in range(5)] == [200] * 5


def test_a_killed_prefill_process_is_restarted_and_the_router_serves_again():
    before = started("pd-1")
    sh("pd-1", "systemctl kill --signal=SIGKILL sglang.service")
    # Detected: systemd restarts the service (Restart=on-failure), health comes back.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if started("pd-1") > before and healthy("pd-1"):
            break
        time.sleep(2)
    assert started("pd-1") > before, "the prefill service was not restarted"
    assert healthy("pd-1")
    # The router serves again once its health check finds the prefill back.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and chat_once() != 200:
        time.sleep(2)
    assert [chat_once() for _ in range(5)] == [200] * 5


def test_smg_takes_over_in_pd_mode_with_both_kinds_of_workers():
    """smg 1.13.0, the gateway of current SGLang, in PD mode: router.yml with the gateway
    switched installs its venv beside sglang-router's, restarts the unit in PD mode and
    gives it both kinds of workers through its API; chat goes through both halves."""
    run = playbook("router.yml", extra={"sglang_router_gateway": "smg"})
    ok(run)
    unit_text = sh("pd-1", "systemctl cat sglang-router.service")
    assert "/opt/sglang-router/venvs/smg-1.13.0/bin/python" in unit_text, unit_text
    assert "--pd-disaggregation" in unit_text
    status, listing = router("/workers")
    assert status == 200, listing
    text = json.dumps(listing)
    for host in SERVERS:
        assert f"http://{host}:30000" in text, listing
    assert [chat_once() for _ in range(5)] == [200] * 5
    assert KEY not in sh("pd-1", "ps -eo args") and KEY not in unit_text
