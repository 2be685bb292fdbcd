#!/usr/bin/python3
"""Restart this node's SGLang when any rank of its server fails its probe.

systemd restarts a server that exits, not one that hangs: a stuck scheduler or NCCL
collective keeps the process alive and every request waiting. And one NCCL group spans
the hosts of a multi-node server: when one rank dies the others are useless, and systemd
cannot bind units across hosts. So every node runs this watchdog against every rank of
its server (a single-node server is a group of one: one URL), rank 0 through a one-token
generation (/health_generate), and restarts only its own unit: a failure anywhere
restarts the whole group without credentials between hosts. It acts only once it has
seen every rank healthy (it is "armed"), and disarms after a restart, so a server that
is starting or restarting is never restarted again by it. Stdlib only: it runs on the
host's /usr/bin/python3.

Usage: sglang-group-watchdog CONFIG.json
Config keys: urls (every rank's probe URL, in rank order), rank (this node's index),
unit, interval and timeout (seconds), failures (consecutive failed probes).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import monotonic


@dataclass(frozen=True)
class Watch:
    """What the watchdog knows between probes."""
    armed: bool = False
    misses: tuple[int, ...] = ()


def decide(watch: Watch, healthy: list[bool], failures: int) -> tuple[Watch, str]:
    """Next state after one probe of every rank, and the action: '', 'arm' or 'restart'."""
    previous = watch.misses or (0,) * len(healthy)
    misses = tuple(0 if ok else miss + 1 for ok, miss in zip(healthy, previous))
    if not watch.armed:
        return (Watch(True, misses), "arm") if all(healthy) else (Watch(False, misses), "")
    if max(misses) >= failures:
        return Watch(False, misses), "restart"
    return Watch(True, misses), ""


def probe(url: str, timeout: float) -> str:
    """'' when the rank answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (http only)
            return "" if answer.status == 200 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:  # 503 while loading or draining
        return f"HTTP {error.code}"
    except Exception as error:  # noqa: BLE001 (any failure is a failed probe)
        return str(getattr(error, "reason", None) or error)


def ranks(count: int) -> str:
    return f"{count} rank" if count == 1 else f"{count} ranks"


def log(message: str) -> None:
    print(message, flush=True)  # stdout is the journal


def run(config: dict, stop: threading.Event) -> None:
    urls, unit, failures = config["urls"], config["unit"], int(config["failures"])
    interval, timeout = float(config["interval"]), float(config["timeout"])
    log(f"watching {ranks(len(urls))} of {unit} as rank {config.get('rank', '?')}: probe every "
        f"{interval:g} s, restart after {failures} consecutive failures; disarmed until "
        f"every rank is healthy")
    watch, waiting_for = Watch(), None
    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        while not stop.is_set():
            started = monotonic()
            # In parallel: one slow rank must not delay the others' probes.
            errors = list(pool.map(lambda url: probe(url, timeout), urls))
            watch, action = decide(watch, [not e for e in errors], failures)
            failing = {i: f"rank {i} {urls[i]} ({e})" for i, e in enumerate(errors) if e}
            if action == "arm":
                log(f"armed: {'all ' if len(urls) > 1 else ''}{ranks(len(urls))} healthy")
            elif action == "restart":
                worst = watch.misses.index(max(watch.misses))
                log(f"restarting {unit}: {failing[worst]} failed {failures} consecutive "
                    f"probes; disarmed until every rank is healthy again. If the group "
                    f"does not come back, systemd's restart limits and the operator take "
                    f"over: this watchdog will not restart it again")
                # --no-block: the restart also restarts this watchdog (PartOf=), so waiting
                # for the job would wait for our own end.
                done = subprocess.run(["systemctl", "--no-block", "restart", unit],
                                      capture_output=True, text=True, timeout=60, check=False)
                # Killed by a signal (< 0): the restart's stop of this watchdog took
                # systemctl with it, after the job was queued. Only an exit is a failure.
                if done.returncode > 0:
                    log(f"systemctl restart {unit} failed ({done.returncode}): "
                        f"{done.stderr.strip()}")
                waiting_for = None
            elif watch.armed and failing:
                log("failed probe: " + "; ".join(
                    f"{text} {watch.misses[i]}/{failures}" for i, text in failing.items()))
            elif not watch.armed and failing and failing != waiting_for:
                # Once per change, so a group that stays down does not flood the journal.
                log("waiting for every rank to be healthy: " + "; ".join(failing.values()))
                waiting_for = failing
            stop.wait(max(0.0, interval - (monotonic() - started)))
    log("stopped")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run(config, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
