"""tools/testbed/clear-networks: a killed run's containers never stop the next run.

CI's machine can be a snapshot of one taken mid-run: its containers still read "Up" while
their conmon is gone, and `podman rm -f` times out on them once. The test makes such a
container the same way (its conmon and process killed) beside a live one, on a network of
its own, and a third container on another network that must be left alone.
"""
import os
import signal
import subprocess
import uuid

import pytest

from runner import ROOT

IMAGE = "localhost/kimi-k2-testhost:bookworm"


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def networks():
    names = [f"kimi-clear-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        podman("network", "create", name)
    yield names
    for name in names:
        subprocess.run(["podman", "rm", "-f", "--ignore", "--time", "0",
                        *podman("ps", "-aq", "--filter", f"network={name}").split()],
                       capture_output=True)
        subprocess.run(["podman", "network", "rm", "-f", name], capture_output=True)


def start(network: str) -> str:
    return podman("run", "-d", "--network", network, IMAGE, "sleep", "600")


def on(network: str) -> list[str]:
    return podman("ps", "-aq", "--no-trunc", "--filter", f"network={network}").split()


def test_clears_a_container_whose_conmon_died_and_spares_other_networks(networks):
    cleared, spared = networks
    stuck, other = start(cleared), start(spared)
    start(cleared)  # a live one beside it
    state = podman("inspect", stuck, "--format", "{{.State.ConmonPid}} {{.State.Pid}}")
    for pid in state.split():
        os.kill(int(pid), signal.SIGKILL)
    # The state podman keeps still says running: this is what a bare `podman rm -f` fails on.
    assert podman("inspect", stuck, "--format", "{{.State.Status}}") == "running"

    subprocess.run([ROOT / "tools/testbed/clear-networks", cleared], check=True)

    assert on(cleared) == []
    assert on(spared) == [other]
