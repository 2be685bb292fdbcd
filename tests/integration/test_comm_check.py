"""The group communication check for real: two ranks of files/sglang_comm_check.py, run
with the real SGLang venv's interpreter (its torch), meet over loopback and run a GLOO
all-reduce; a wrong interface and an unreachable node 0 fail within the bound, naming
node, interface and port. (Molecule's fleet runs the same check between test hosts,
through serve.yml and playbooks/comm_check.yml: molecule/fleet/tests/test_comm_check.py.)"""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from runner import ROOT
from sim_process import free_port  # tests/unit, on the path: pytest.ini

SGLANG_PYTHON = os.environ.get("SGLANG_PYTHON", str(ROOT / ".venv-sglang" / "bin" / "python"))
SCRIPT = ROOT / "roles" / "sglang_service" / "files" / "sglang_comm_check.py"


@pytest.fixture(scope="module", autouse=True)
def sglang_venv():
    if not Path(SGLANG_PYTHON).exists():
        pytest.fail(f"no SGLang venv at {SGLANG_PYTHON}: run `make conformance`")


def rank(node, number, port, interface, timeout=30, world=2):
    return subprocess.Popen(
        [SGLANG_PYTHON, str(SCRIPT), "--node", node, "--rank", str(number), "--world-size",
         str(world), "--addr", "127.0.0.1", "--port", str(port), "--interface", interface,
         "--timeout", str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def results(*processes):
    out = []
    for process in processes:
        stdout, _ = process.communicate(timeout=120)
        out.append((process.returncode, json.loads(stdout.strip().splitlines()[-1])))
    return out


def test_two_ranks_meet_and_all_reduce_over_the_right_interface():
    port = free_port()
    for code, result in results(rank("node-a", 0, port, "lo"), rank("node-b", 1, port, "lo")):
        assert code == 0 and result["ok"], result
        assert "GLOO all-reduce" in result["message"]


def test_a_wrong_interface_fails_at_once_naming_it():
    port = free_port()
    began = time.monotonic()
    for code, result in results(rank("node-a", 0, port, "eth9"), rank("node-b", 1, port, "eth9")):
        assert code == 1 and not result["ok"]
        assert "interface eth9" in result["message"] and f"127.0.0.1:{port}" in result["message"]
        assert "Unable to find address for: eth9" in result["message"]
    assert time.monotonic() - began < 60


def test_a_node_that_cannot_reach_node_0_fails_within_the_bound():
    port = free_port()                                  # nobody listens: node 0 is absent
    began = time.monotonic()
    [(code, result)] = results(rank("node-b", 1, port, "lo", timeout=10))
    took = time.monotonic() - began
    assert code == 1 and not result["ok"]
    assert "node-b (rank 1 of 2), interface lo" in result["message"]
    assert f"port {port} (sglang_service_dist_init_port)" in result["message"]
    assert took < 10 + 5 + 10, took                      # the timeout, the kill's margin, slack
