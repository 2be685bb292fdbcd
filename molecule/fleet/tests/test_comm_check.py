"""The group communication check (issue 16) between test hosts, with the real SGLang
venv's torch (molecule.yml mounts it; inventory/hosts.yml turns the check on over eth0).
Runs before test_fleet.py (pytest takes the files in order) and leaves the fleet as the
converge did: both groups serving, the router's two workers healthy.

The converge ran the check before each group's first start. Here pair2 (fleet-3 node 0,
fleet-4 rank 1) is stopped: playbooks/comm_check.yml passes over eth0; serve.yml with the
loopback as the cluster NIC, and with node 0's port 50000 dropped by nftables in fleet-3's
container, fails within the check's bound naming node, interface and port, and neither
rank starts; serve.yml with the inventory's settings then checks, passes and starts the
group again.
"""
from __future__ import annotations

import re
import subprocess
import time

import pytest

from scenario import block_port  # tests/lib
from test_fleet import PAIRS, ok, playbook, router, sh, started

GROUP = "kimi_demo_pair2"
NODE0, RANK1 = PAIRS[GROUP]
PORT = 50000  # sglang_service_dist_init_port (the role's default)
# The failing runs' bound: the check's child is killed at the timeout + 5 s; the rest is
# ansible's own work on a loaded 2-core machine.
TIMEOUT = 20
BOUND = TIMEOUT + 5 + 15
CHECK_TASK = "Meet the group at node 0 and all-reduce"
# ansible.posix.profile_tasks ends each run with its tasks' durations.
PROFILED = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}


def active(host: str, unit: str = "sglang.service") -> str:
    return sh(host, f"systemctl is-active {unit} || true").strip()


def serve(**extra) -> tuple[subprocess.CompletedProcess, str]:
    run = playbook("serve.yml", options=("--limit", GROUP), extra=extra or None, env=PROFILED)
    return run, " ".join(run.stdout.split())


def check_seconds(text: str) -> float:
    found = re.search(rf"{CHECK_TASK}[ -]+([0-9.]+)s", text)
    assert found, f"no duration of '{CHECK_TASK}' in the run's profile: {text[-3000:]}"
    return float(found.group(1))


def test_the_converge_ran_the_check_on_every_rank_of_both_groups():
    """The program is installed only where the check ran (a group about to start)."""
    for host in [h for pair in PAIRS.values() for h in pair]:
        assert sh(host, "test -f /usr/local/lib/sglang_comm_check.py && echo ran").strip() == "ran", host
        assert active(host) == "active", host


@pytest.fixture(scope="module")
def stopped_group():
    """pair2 stopped: the check runs on a stopped group, whose node 0 no longer holds the
    port. The watchdogs first, so that neither restarts its rank when the other's stops.
    Put back by the last test; here too should a test before it fail."""
    for unit in ("sglang-group-watchdog.service", "sglang.service"):
        for host in (NODE0, RANK1):
            sh(host, f"systemctl stop {unit}")
    yield {host: started(host) for host in (NODE0, RANK1)}
    if any(active(host) != "active" for host in (NODE0, RANK1)):
        ok(playbook("serve.yml", options=("--limit", GROUP)))


def test_comm_check_yml_meets_the_stopped_group_over_the_right_interface(stopped_group):
    run = playbook("comm_check.yml", options=("--limit", GROUP))
    ok(run)
    text = " ".join(run.stdout.split())
    for host, rank in ((NODE0, 0), (RANK1, 1)):
        assert (f"communication check passed on {host} (rank {rank} of 2), interface eth0, "
                f"node 0 at {NODE0}:{PORT}: GLOO all-reduce") in text, run.stdout[-6000:]


def assert_not_started(before: dict[str, int]) -> None:
    for host, then in before.items():
        assert active(host) == "inactive", host
        assert active(host, "sglang-group-watchdog.service") == "inactive", host
        assert started(host) == then, f"{host}'s server was started"


def test_a_wrong_interface_fails_fast_naming_node_interface_and_port_and_nothing_starts(stopped_group):
    # The loopback: a NIC that exists but does not reach the other node.
    run, text = serve(sglang_service_cluster_interface="lo", sglang_service_comm_check_timeout=TIMEOUT)
    assert run.returncode != 0, run.stdout[-6000:]
    assert (f"communication check failed on {RANK1} (rank 1 of 2), interface lo, node 0 at "
            f"{NODE0}:{PORT}") in text, text[-6000:]
    assert f"port {PORT} (sglang_service_dist_init_port)" in text, text[-6000:]
    assert "SGLang was not started." in text, text[-6000:]
    assert check_seconds(text) <= BOUND, text[-3000:]
    assert_not_started(stopped_group)


def test_a_port_blocked_on_node_0_fails_fast_naming_node_interface_and_port_and_nothing_starts(stopped_group):
    unblock = block_port(NODE0, PORT)
    try:
        run, text = serve(sglang_service_comm_check_timeout=TIMEOUT)
    finally:
        unblock()
    assert run.returncode != 0, run.stdout[-6000:]
    assert (f"communication check failed on {RANK1} (rank 1 of 2), interface eth0, node 0 at "
            f"{NODE0}:{PORT}") in text, text[-6000:]
    assert f"port {PORT} (sglang_service_dist_init_port)" in text, text[-6000:]
    assert "SGLang was not started." in text, text[-6000:]
    assert check_seconds(text) <= BOUND, text[-3000:]
    assert_not_started(stopped_group)


def test_with_the_path_open_serve_yml_checks_then_starts_the_group_and_the_router_has_it(stopped_group):
    """The inventory's own settings: the run that brings pair2 back as converged."""
    run, text = serve()
    ok(run)
    for host, rank in ((NODE0, 0), (RANK1, 1)):
        assert (f"communication check passed on {host} (rank {rank} of 2), interface eth0, "
                f"node 0 at {NODE0}:{PORT}: GLOO all-reduce") in text, text[-6000:]
        assert active(host) == "active" and started(host) > stopped_group[host], host
    deadline = time.monotonic() + 60
    while True:
        status, listing = router("/workers")
        workers = {w["url"]: w["is_healthy"] for w in listing.get("workers", [])}
        if workers == {"http://fleet-1:30000": True, f"http://{NODE0}:30000": True}:
            break
        assert time.monotonic() < deadline, (status, listing)
        time.sleep(1)
