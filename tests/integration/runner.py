"""Drive the toolkit's playbooks through ansible-runner's Python API."""
from __future__ import annotations

from pathlib import Path

import ansible_runner

ROOT = Path(__file__).resolve().parents[2]


def play(playbook: str, inventory: str, tmp_path: Path, extravars: dict | None = None):
    """Run one playbook; return the runner (status, rc, events, stats)."""
    return ansible_runner.run(
        private_data_dir=str(tmp_path),
        project_dir=str(ROOT),
        playbook=str(ROOT / playbook),
        inventory=str(ROOT / "inventories" / inventory),
        extravars=extravars or {},
        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        quiet=True,
    )


def task_results(runner, event: str, task_suffix: str) -> dict[str, dict]:
    """host -> result of the events of one kind for tasks whose name ends with the suffix."""
    out = {}
    for e in runner.events:
        data = e.get("event_data", {})
        if e["event"] == event and data.get("task", "").endswith(task_suffix):
            out[data["host"]] = data["res"]
    return out
