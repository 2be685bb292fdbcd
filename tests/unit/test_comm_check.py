"""The group communication check's own logic (files/sglang_comm_check.py): bus bandwidth
as nccl-tests counts it, the per-fabric threshold, and messages that name node, interface
and port. The real GLOO all-reduce runs in tests/integration/test_comm_check.py (it needs
torch) and in the demo fleet."""
import argparse

import pytest

from conftest import ROOT, load_file

check = load_file("sglang_comm_check", ROOT / "roles" / "sglang_service" / "files" / "sglang_comm_check.py")


def args(**more):
    base = {"node": "gpu-07", "rank": 1, "world_size": 2, "addr": "10.0.0.1", "port": 50000,
            "interface": "ib0", "timeout": 60, "nccl": False, "min_busbw_gbps": 0.0}
    return argparse.Namespace(**{**base, **more})


@pytest.mark.parametrize("size,seconds,world,expected", [
    (1 << 30, 0.01, 2, 107.374), (1 << 30, 0.01, 16, 201.327), (1 << 30, 0.01, 1, 0.0),
    (1 << 30, 0.0, 2, 0.0)])
def test_bus_bandwidth_is_nccl_tests_busbw(size, seconds, world, expected):
    # busbw = algbw x 2(n-1)/n: with 2 ranks the same as algbw, towards 2x for many.
    assert check.bus_bandwidth_gbps(size, seconds, world) == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("busbw,minimum,fails", [(10.0, 0, False), (10.0, 40, True),
                                                  (40.0, 40, False), (370.5, 300, False)])
def test_the_fabric_threshold(busbw, minimum, fails):
    problem = check.bandwidth_problem(busbw, minimum, "ib0")
    assert bool(problem) == fails
    if fails:
        assert f"{busbw:.1f} GB/s is below sglang_service_comm_check_min_busbw_gbps" in problem
        assert "interface ib0" in problem


def test_a_failure_names_node_interface_and_port():
    message = check.failure(args(), "no rendezvous or all-reduce within 60 s")
    for part in ("gpu-07 (rank 1 of 2)", "interface ib0", "node 0 at 10.0.0.1:50000",
                 "port 50000 (sglang_service_dist_init_port)", "sglang_service_cluster_interface"):
        assert part in message, message


def test_an_unset_interface_is_said_to_be_unset():
    assert "sglang_service_cluster_interface is empty" in check.describe(args(interface=""))


def test_the_error_line_of_a_traceback_is_kept():
    stderr = ("Traceback (most recent call last):\n  File \"x\", line 1\n"
              "RuntimeError: Unable to find address for: eth9\n")
    assert check.last_error(stderr) == "RuntimeError: Unable to find address for: eth9"
    assert check.last_error("") == ""


def test_an_interpreter_without_torch_fails_naming_node_and_port():
    """The check runs with the SGLang venv's interpreter; one without torch (this one)
    fails, and says where."""
    result = check.check(args(timeout=1), ["--node", "gpu-07", "--rank", "1", "--world-size",
                                           "2", "--addr", "192.0.2.1", "--port", "50000",
                                           "--timeout", "1"])
    assert result["ok"] is False
    assert "port 50000" in result["message"] and "gpu-07" in result["message"]
    assert "has no torch: point sglang_service_comm_check_python" in result["message"]
