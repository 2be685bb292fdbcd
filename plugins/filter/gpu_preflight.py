"""A GPU host's preflight verdict from gpu_facts. The checks live in plugins/module_utils/nvidia_smi.py
and plugins/module_utils/rdma.py (one definition each, unit-tested against recorded nvidia-smi
output and sysfs trees)."""
from __future__ import annotations

from typing import Any

from ansible_collections.kimi_k2.sglang.plugins.module_utils.nvidia_smi import gpu_problems
from ansible_collections.kimi_k2.sglang.plugins.module_utils.rdma import rdma_problems


def gpu_preflight_verdict(facts: dict[str, Any], expect: dict[str, Any], host: str
                          ) -> dict[str, Any]:
    """What the fleet report shows of a host: its GPUs in brief and every problem."""
    expect = {**expect, "nvswitch": str(expect["nvswitch"]).lower() == "true"}
    for key in ("gpu_count", "memory_mib", "free_bytes_required"):
        expect[key] = int(expect[key])
    problems = gpu_problems(facts, expect) + rdma_problems(
        facts.get("rdma") or {}, list(expect.get("rdma_devices") or []))
    return {
        "host": host, "passed": not problems, "problems": problems,
        "gpus": [{k: g[k] for k in ("index", "pci.bus_id", "name", "uuid", "driver_version",
                                     "memory.total", "persistence_mode")}
                 for g in facts.get("gpus") or []],
        "fabric": {bus: (gpu.get("Fabric") or {}).get("State")
                   for bus, gpu in ((facts.get("q") or {}).get("gpus") or {}).items()},
        "loaded_version": facts.get("loaded_version"),
        "installed_version": facts.get("installed_version"),
        "fabricmanager_state": facts.get("fabricmanager_state"),
        "nvswitch": expect["nvswitch"], "free_bytes": facts.get("free_bytes"),
        "smi_error": facts.get("smi_error") or "",
        "rdma": {device: {port: p["state"] for port, p in ports.items()}
                 for device, ports in (facts.get("rdma") or {}).items()},
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gpu_preflight_verdict": gpu_preflight_verdict}
