"""The RDMA half of the GPU preflight (plugins/module_utils/rdma.py): a host whose named
RDMA device is missing or down is refused, naming the device; read from a recorded sysfs
tree (tests/fixtures/infiniband: mlx5_0/1 InfiniBand NDR up, mlx5_2 down, mlx5_3 RoCE up)."""
from __future__ import annotations

import shutil

from ansible_collections.kimi_k2.sglang.plugins.filter.gpu_preflight import gpu_preflight_verdict
from ansible_collections.kimi_k2.sglang.plugins.module_utils import rdma

from conftest import ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "infiniband"


def test_reads_every_port_as_the_kernel_writes_it():
    found = rdma.read_infiniband(str(FIXTURE))
    assert sorted(found) == ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]
    assert found["mlx5_0"]["1"] == {"state": "4: ACTIVE", "phys_state": "5: LinkUp",
                                    "link_layer": "InfiniBand", "rate": "400 Gb/sec (4X NDR)"}


def test_active_infiniband_and_roce_devices_pass():
    found = rdma.read_infiniband(str(FIXTURE))
    assert rdma.rdma_problems(found, ["mlx5_0", "mlx5_1", "mlx5_3"]) == []


def test_a_down_device_is_refused_with_its_port_states():
    [problem] = rdma.rdma_problems(rdma.read_infiniband(str(FIXTURE)), ["mlx5_0", "mlx5_2"])
    assert problem.startswith("RDMA device mlx5_2 is not ACTIVE (port 1 DOWN/Polling)")


def test_a_missing_device_is_refused_naming_what_the_host_has():
    [problem] = rdma.rdma_problems(rdma.read_infiniband(str(FIXTURE)), ["mlx5_9"])
    assert "RDMA device mlx5_9 is not on this host (it has: mlx5_0, mlx5_1, mlx5_2, mlx5_3)" \
        in problem and "gpu_preflight_rdma_devices" in problem


def test_an_active_port_without_physical_link_is_down(tmp_path):
    tree = tmp_path / "infiniband"
    shutil.copytree(FIXTURE, tree)
    (tree / "mlx5_0" / "ports" / "1" / "phys_state").write_text("3: Disabled\n")
    [problem] = rdma.rdma_problems(rdma.read_infiniband(str(tree)), ["mlx5_0"])
    assert "port 1 ACTIVE/Disabled" in problem


def test_a_host_without_the_class_has_no_devices(tmp_path):
    assert rdma.read_infiniband(str(tmp_path / "absent")) == {}
    assert "it has: none" in rdma.rdma_problems({}, ["mlx5_0"])[0]


def test_the_verdict_carries_rdma_problems_and_states():
    facts = {"smi_error": "NVIDIA-SMI has failed", "rdma": rdma.read_infiniband(str(FIXTURE))}
    expect = {"gpu_count": 8, "gpu_model": "H200", "memory_mib": 143771,
              "driver_version": "580.95.05", "nvswitch": "false", "free_bytes_required": 0,
              "rdma_devices": ["mlx5_2"]}
    verdict = gpu_preflight_verdict(facts, expect, "gpu-1")
    assert not verdict["passed"]
    assert any("mlx5_2 is not ACTIVE" in p for p in verdict["problems"])
    assert verdict["rdma"]["mlx5_2"] == {"1": "1: DOWN"}


def test_a_linked_port_that_the_subnet_manager_has_not_activated_is_down(tmp_path):
    """Physical link up, logical state INIT: no subnet manager has configured the port."""
    tree = tmp_path / "infiniband"
    shutil.copytree(FIXTURE, tree)
    (tree / "mlx5_0" / "ports" / "1" / "state").write_text("2: INIT\n")
    [problem] = rdma.rdma_problems(rdma.read_infiniband(str(tree)), ["mlx5_0"])
    assert "port 1 INIT/LinkUp" in problem
