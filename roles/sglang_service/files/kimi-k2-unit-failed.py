#!/usr/bin/python3
"""Record that systemd gave up on a unit: the OnFailure= hook of sglang.service.

Usage: kimi-k2-unit-failed UNIT (from kimi-k2-unit-failed@UNIT.service, a oneshot)

Writes DIR/UNIT.json (DIR: $STATE_DIRECTORY, else /var/lib/kimi-k2-toolkit/failures):
when, the unit's Result, how its last process ended, systemd's restart count and how
many failures were recorded so far; playbooks/status.yml shows it. Prints the same as
one line to the journal. Stdlib only: it runs on the host's /usr/bin/python3.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

PROPERTIES = ("Result", "ExecMainCode", "ExecMainStatus", "NRestarts", "InvocationID")
DEFAULT_DIR = "/var/lib/kimi-k2-toolkit/failures"


def unit_state(unit: str) -> dict[str, str]:
    """The failed unit's properties; systemd >= 251 also hands them over as MONITOR_*."""
    out = subprocess.run(["systemctl", "show", "--property", ",".join(PROPERTIES), "--", unit],
                         capture_output=True, text=True, check=False).stdout
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if os.environ.get("MONITOR_SERVICE_RESULT"):
        props["Result"] = os.environ["MONITOR_SERVICE_RESULT"]
    return props


def record(unit: str, props: dict[str, str], previous: dict, now: float) -> dict:
    code = props.get("ExecMainCode", "")
    ended = {"1": "exit code", "2": "signal", "3": "signal (core dumped)"}.get(code, "")
    return {
        "unit": unit,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "result": props.get("Result") or "unknown",
        "ended_with": f"{ended} {props.get('ExecMainStatus', '')}".strip() if ended else "",
        "restarts": int(props.get("NRestarts") or 0),
        "invocation": props.get("InvocationID", ""),
        "count": int(previous.get("count") or 0) + 1,
    }


def line(entry: dict) -> str:
    ended = f", last process ended with {entry['ended_with']}" if entry["ended_with"] else ""
    return (f"{entry['unit']} failed at {entry['at']}: result {entry['result']}{ended}, "
            f"{entry['restarts']} automatic restart(s) before systemd gave up "
            f"(failure {entry['count']} recorded on this host)")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0]:
        print("usage: kimi-k2-unit-failed UNIT", file=sys.stderr)
        return 2
    unit = argv[0]
    directory = (os.environ.get("STATE_DIRECTORY") or DEFAULT_DIR).split(":")[0]
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, f"{unit}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        previous = {}
    entry = record(unit, unit_state(unit), previous if isinstance(previous, dict) else {},
                   time.time())
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".failure-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(entry, handle, sort_keys=True)
        handle.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(line(entry), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
