"""Read a host's RDMA devices from sysfs, and judge them against the devices it must use.

Stdlib only: the reader runs on the host (plugins/modules/gpu_facts.py); the judgement runs
on the controller (plugins/filter/gpu_preflight.py). The kernel's InfiniBand class
(/sys/class/infiniband/<device>/ports/<n>/) gives each port's logical `state` ("4: ACTIVE"),
`phys_state` ("5: LinkUp"), `link_layer` (InfiniBand, or Ethernet for RoCE) and `rate`
("400 Gb/sec (4X NDR)"), which is what `ibv_devinfo` prints too, without needing
rdma-core's tools on the host.
"""
from __future__ import annotations

import os
from typing import Any

PORT_FILES = ("state", "phys_state", "link_layer", "rate")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def read_infiniband(root: str) -> dict[str, dict[str, dict[str, str]]]:
    """{device: {port: {state, phys_state, link_layer, rate}}}; {} without the class."""
    devices: dict[str, dict[str, dict[str, str]]] = {}
    if not os.path.isdir(root):
        return devices
    for device in sorted(os.listdir(root)):
        ports_dir = os.path.join(root, device, "ports")
        ports = sorted(os.listdir(ports_dir)) if os.path.isdir(ports_dir) else []
        devices[device] = {port: {name: _read(os.path.join(ports_dir, port, name))
                                  for name in PORT_FILES} for port in ports}
    return devices


def _word(value: str) -> str:
    """'4: ACTIVE' -> 'ACTIVE' (the kernel writes the number and the name)."""
    return value.split(":", 1)[-1].strip() or "unknown"


def rdma_problems(found: dict[str, dict[str, dict[str, str]]], wanted: list[str]
                  ) -> list[str]:
    """Every device the host must use that is missing or has no port ACTIVE and LinkUp."""
    problems = []
    for device in wanted:
        ports = found.get(device)
        if ports is None:
            have = ", ".join(sorted(found)) or "none"
            problems.append(f"RDMA device {device} is not on this host (it has: {have}): fix "
                            "gpu_preflight_rdma_devices for this host, or check the NIC and "
                            "its driver (`ibv_devinfo`, dmesg)")
            continue
        if not any(_word(p["state"]) == "ACTIVE" and _word(p["phys_state"]) == "LinkUp"
                   for p in ports.values()):
            states = ", ".join(f"port {n} {_word(p['state'])}/{_word(p['phys_state'])}"
                               for n, p in sorted(ports.items())) or "no ports"
            problems.append(f"RDMA device {device} is not ACTIVE ({states}): check its cable "
                            "and the subnet manager (`ibstat`), then re-run the preflight")
    return problems
