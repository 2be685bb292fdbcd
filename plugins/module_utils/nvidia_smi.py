"""Read nvidia-smi's two output formats, and judge a GPU host from them.

Stdlib only: the parsers run on the host (plugins/modules/gpu_facts.py); the judgement runs on
the controller (plugins/filter/gpu_preflight.py). The query CSV gives the per-GPU basics;
`nvidia-smi -q` adds what no query field has: the fabric state and the remapped rows.
"""
from __future__ import annotations

import re
from typing import Any

# --query-gpu fields, in order (with --format=csv,noheader,nounits).
QUERY_FIELDS = ("index", "pci.bus_id", "name", "uuid", "driver_version", "memory.total",
                "persistence_mode", "ecc.mode.current", "ecc.errors.uncorrected.volatile.total")
_KEY_VALUE = re.compile(r"^(\s*)([^:]+?)\s*:\s?(.*)$")


def parse_query_csv(text: str) -> list[dict[str, str]]:
    """One dict per GPU, keyed by QUERY_FIELDS."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.split(",")]
        if len(values) != len(QUERY_FIELDS):
            raise ValueError(f"nvidia-smi query line has {len(values)} fields, expected "
                             f"{len(QUERY_FIELDS)}: {line!r}")
        gpus.append(dict(zip(QUERY_FIELDS, values)))
    return gpus


def parse_q(text: str) -> dict[str, Any]:
    """`nvidia-smi -q` as nested dicts: {"Driver Version": ..., "gpus": {bus_id: {...}}}.

    Sections are lines without a value; their members are indented below them."""
    top: dict[str, Any] = {"gpus": {}}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, top)]
    for line in text.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        gpu = re.match(r"^GPU ([0-9A-Fa-f:.]+)\s*$", line)
        if gpu:
            section: dict[str, Any] = {}
            top["gpus"][gpu.group(1).upper()] = section
            stack = [(-1, top), (0, section)]
            continue
        match = _KEY_VALUE.match(line)
        if match:
            indent, key, value = len(match.group(1)), match.group(2).strip(), match.group(3)
        else:  # a section header without a colon
            indent, key, value = len(line) - len(line.lstrip()), line.strip(), ""
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value.strip():
            parent[key] = value.strip()
        else:
            parent[key] = {}
            stack.append((indent, parent[key]))
    return top


def _mib(value: str) -> int:
    return int(float(str(value).split()[0]))


def gpu_problems(facts: dict[str, Any], expect: dict[str, Any]) -> list[str]:
    """Everything that makes this host unfit to serve, each naming the fix.

    facts: what plugins/modules/gpu_facts.py returns. expect: gpu_count, gpu_model,
    memory_mib, driver_version, nvswitch (bool), free_bytes_required."""
    if facts.get("smi_error"):
        error = facts["smi_error"]
        if "version mismatch" in error.lower():
            return [f"nvidia-smi: {error.strip()}. The loaded kernel module "
                    f"({facts.get('loaded_version') or 'unknown'}) is not the installed "
                    f"driver ({facts.get('installed_version') or 'unknown'}): reboot the host "
                    "(or reload the nvidia modules) before serving"]
        return [f"nvidia-smi failed: {error.strip()} (is the driver installed and loaded?)"]
    problems = []
    gpus = facts.get("gpus") or []
    if len(gpus) != expect["gpu_count"]:
        problems.append(f"{len(gpus)} GPUs visible, expected {expect['gpu_count']} (set "
                        "gpu_preflight_gpu_count if this host really has fewer; otherwise "
                        "check `nvidia-smi -L` and dmesg for a fallen-off GPU)")
    for gpu in gpus:
        label = f"GPU {gpu['index']} ({gpu['pci.bus_id']})"
        if expect["gpu_model"] not in gpu["name"]:
            problems.append(f"{label} is a {gpu['name']}, expected {expect['gpu_model']}")
        if _mib(gpu["memory.total"]) < 0.99 * expect["memory_mib"]:
            problems.append(f"{label} has {gpu['memory.total']} MiB, expected "
                            f"{expect['memory_mib']} MiB")
        if gpu["driver_version"] != expect["driver_version"]:
            problems.append(f"{label} runs driver {gpu['driver_version']}, pinned is "
                            f"{expect['driver_version']}: run playbooks/upgrade_gpu_stack.yml")
        if gpu["persistence_mode"] != "Enabled":
            problems.append(f"{label} persistence mode is {gpu['persistence_mode']}: enable "
                            "nvidia-persistenced")
        if gpu["ecc.errors.uncorrected.volatile.total"] not in ("0", "[N/A]"):
            problems.append(f"{label} has {gpu['ecc.errors.uncorrected.volatile.total']} "
                            "uncorrected volatile ECC errors: drain the host and reset the GPU")
        detail = (facts.get("q") or {}).get("gpus", {}).get(gpu["pci.bus_id"].upper(), {})
        rows = detail.get("Remapped Rows") or {}
        if rows.get("Pending") == "Yes" or rows.get("Remapping Failure Occurred") == "Yes":
            problems.append(f"{label} has remapped rows pending or a remapping failure: "
                            "reset the GPU (pending) or replace it (failure)")
        if expect["nvswitch"]:
            fabric = detail.get("Fabric") or {}
            if fabric.get("State") != "Completed" or fabric.get("Status") != "Success":
                problems.append(f"{label} fabric state is {fabric.get('State', 'unknown')} "
                                f"(status {fabric.get('Status', 'unknown')}), not Completed: "
                                "NVLink is not ready; check nvidia-fabricmanager")
    if facts.get("loaded_version") and facts.get("installed_version") and \
            facts["loaded_version"] != facts["installed_version"]:
        problems.append(f"the loaded kernel module is {facts['loaded_version']} but the "
                        f"installed driver is {facts['installed_version']}: reboot the host")
    if expect["nvswitch"] and facts.get("fabricmanager_state") != "active":
        problems.append(f"nvidia-fabricmanager is {facts.get('fabricmanager_state') or 'absent'}"
                        ", not active: `systemctl status nvidia-fabricmanager` (its version "
                        "must equal the driver's)")
    free = facts.get("free_bytes")
    if free is not None and free < expect["free_bytes_required"]:
        problems.append(f"{free / 2**30:.0f} GiB free at {facts.get('free_path')}, the model "
                        f"cache needs {expect['free_bytes_required'] / 2**30:.0f} GiB")
    return problems
