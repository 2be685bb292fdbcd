"""What a Molecule scenario's tests do to its hosts: run the toolkit's playbooks against the
scenario's inventory, run commands in its containers, read a server's unit and state."""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
# The scenario's inventory folder: Molecule's hosts file beside the linked group_vars and
# the scenario's own hosts.yml.
INVENTORY = str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)


def playbook(*names: str, options: tuple[str, ...] = (), extra: dict | str | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the toolkit's playbooks NAMES, in order, in one ansible-playbook call (its
    failures, which ansible-core 2.19 writes to stderr, in the same stream)."""
    argv = ["ansible-playbook", "-i", INVENTORY,
            *(str(PROJECT / "playbooks" / name) for name in names), *options]
    if extra:
        argv += ["-e", extra if isinstance(extra, str) else json.dumps(extra)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1500, env={**os.environ, **(env or {})})


def ok(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0, run.stdout[-6000:]


def changed_per_host(run: subprocess.CompletedProcess) -> dict[str, int]:
    """The recap's changed count per host."""
    return {host: int(n) for host, n in
            re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", run.stdout, re.MULTILINE)}


def sh(host: str, command: str) -> str:
    return subprocess.run(["podman", "exec", host, "sh", "-c", command], check=True,
                          capture_output=True, text=True).stdout


@functools.cache
def address(host: str) -> str:
    """The container's address: fixed for the scenario's life (each request would otherwise
    spend a `podman inspect`, which under traffic kept a CPU busy)."""
    out = subprocess.run(["podman", "inspect", "-f",
                          "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", host],
                         check=True, capture_output=True, text=True).stdout
    return out.strip()


def started(host: str) -> int:
    """When sglang.service last entered 'active' (monotonic µs): changes on every restart."""
    return int(sh(host, "systemctl show sglang.service -p ActiveEnterTimestampMonotonic --value"))


def unit(host: str) -> str:
    return sh(host, "cat /etc/systemd/system/sglang.service")


def healthy(host: str) -> bool:
    return sh(host, "curl -s -o /dev/null -w '%{http_code}' "
                    "http://127.0.0.1:30000/health || true") == "200"


def block_port(host: str, port: int, source: str = ""):
    """Drop TCP to `port` on its way into `host` (only from the address `source`, if
    given): an nftables table in the container's own network namespace, set from the CI
    host (the test image has no nft, the containers no CAP_NET_ADMIN). Returns the
    function that deletes it."""
    pid = subprocess.run(["podman", "inspect", "-f", "{{.State.Pid}}", host], check=True,
                         capture_output=True, text=True).stdout.strip()
    match = f"ip saddr {source} " if source else ""
    rules = ("add table inet kimi_test\n"
             "add chain inet kimi_test input { type filter hook input priority 0; }\n"
             f"add rule inet kimi_test input {match}tcp dport {port} drop\n")
    subprocess.run(["nsenter", "-t", pid, "-n", "nft", "-f", "-"], input=rules, text=True,
                   check=True)
    return lambda: subprocess.run(["nsenter", "-t", pid, "-n", "nft", "delete", "table", "inet",
                                   "kimi_test"], check=True)
