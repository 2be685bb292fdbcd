"""The batched plays' `serial`, defaults and inventory check, run by ansible-playbook.

Each case runs the real play's vars, serial, max_fail_percentage and pre_tasks (its
roles swapped for one task that prints the batch) on eight local inventory hosts, so no
host is touched; the refused values are also run through the real playbooks, against
hosts that do not exist: the run must stop before trying to reach them."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HOSTS = [f"gpu-{i}" for i in range(1, 9)]
PLAYS = {"gpu_hosts.yml": "gpu_hosts_serial", "upgrade_gpu_stack.yml": "gpu_upgrade_serial"}


def ansible_playbook(playbook: Path, inventory: Path, *args: str):
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i",
                           str(inventory), str(playbook), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def inventory(tmp_path: Path, group_vars: dict | None = None, **host_vars) -> Path:
    hosts = {host: dict(host_vars) for host in HOSTS}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"gpu_hosts": {"hosts": hosts}}}}))
    if group_vars:
        (tmp_path / "group_vars").mkdir()
        (tmp_path / "group_vars" / "gpu_hosts.yml").write_text(yaml.safe_dump(group_vars))
    return tmp_path / "hosts.yml"


def batches(playbook: str, tmp_path: Path, *args: str, group_vars: dict | None = None):
    """(batches as lists of hosts, the run) for the play that batches in `playbook`."""
    play = next(p for p in yaml.safe_load((ROOT / "playbooks" / playbook).read_text())
                if "serial" in p)
    probe = {key: play[key] for key in ("name", "hosts", "vars", "serial",
                                        "max_fail_percentage", "pre_tasks")}
    # Without the toolkit's locks (tasks/lock.yml; tested in tests/integration/test_demo.py).
    probe["pre_tasks"] = [task for task in probe["pre_tasks"]
                          if "tasks/lock.yml" not in str(task.get("ansible.builtin.import_tasks"))]
    # The probe is written elsewhere: its imports (tasks/batch_size.yml) keep their files.
    for task in probe["pre_tasks"]:
        if "ansible.builtin.import_tasks" in task:
            task["ansible.builtin.import_tasks"] = str(
                ROOT / "playbooks" / task["ansible.builtin.import_tasks"])
    probe.update(gather_facts=False, tasks=[{
        "name": "Print the batch",
        "ansible.builtin.debug": {"msg": "BATCH {{ ansible_play_batch | join(',') }}"},
        "run_once": True}])
    (tmp_path / "probe.yml").write_text(yaml.safe_dump([probe], sort_keys=False))
    run = ansible_playbook(tmp_path / "probe.yml",
                           inventory(tmp_path, group_vars, ansible_connection="local"), *args)
    return [m.split(",") for m in re.findall(r"BATCH ([\w,-]+)", run.stdout)], run


def sizes(found: list[list[str]]) -> list[int]:
    assert [host for batch in found for host in batch] == HOSTS
    return [len(batch) for batch in found]


@pytest.mark.parametrize("playbook, args, expected", [
    ("gpu_hosts.yml", [], [2, 2, 2, 2]),                       # default 25%
    ("upgrade_gpu_stack.yml", [], [1] * 8),                    # default 1
    ("upgrade_gpu_stack.yml", ["-e", "gpu_upgrade_serial=3"], [3, 3, 2]),
    ("gpu_hosts.yml", ["-e", "gpu_hosts_serial=50%"], [4, 4]),
    ("upgrade_gpu_stack.yml", ["-e", json.dumps({"gpu_upgrade_serial": [1, "50%"]})],
     [1, 4, 3]),
])
def test_batches_follow_the_default_or_the_command_line(playbook, args, expected, tmp_path):
    found, run = batches(playbook, tmp_path, *args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sizes(found) == expected


@pytest.mark.parametrize("playbook", sorted(PLAYS))
@pytest.mark.parametrize("value", ["0", "-1", "abc", "12.5%"])
def test_a_bad_batch_size_stops_the_run_before_any_batch(playbook, value, tmp_path):
    variable = PLAYS[playbook]
    found, run = batches(playbook, tmp_path, "-e", f"{variable}={value}")
    assert run.returncode != 0
    assert found == []
    assert f"{variable} must be a positive number of hosts" in run.stdout + run.stderr


@pytest.mark.parametrize("playbook", sorted(PLAYS))
def test_a_batch_size_in_the_inventory_is_refused_not_ignored(playbook, tmp_path):
    variable = PLAYS[playbook]
    found, run = batches(playbook, tmp_path, group_vars={variable: 4})
    assert run.returncode != 0
    assert found == []
    message = " ".join(run.stdout.split())
    assert (f"{variable} is set in the inventory of 8 hosts (gpu-1: 4, gpu-2: 4, gpu-3: 4)"
            in message)
    assert f"pass the batch size with -e {variable}=" in message


@pytest.mark.parametrize("playbook", sorted(PLAYS))
def test_the_same_size_on_the_command_line_is_taken(playbook, tmp_path):
    variable = PLAYS[playbook]
    found, run = batches(playbook, tmp_path, "-e", f"{variable}=4", group_vars={variable: 4})
    assert run.returncode == 0, run.stdout + run.stderr
    assert sizes(found) == [4, 4]


@pytest.mark.parametrize("playbook", sorted(PLAYS))
def test_the_real_playbook_refuses_a_bad_size_before_connecting(playbook, tmp_path):
    # Hosts at a closed local port: reaching for them would print UNREACHABLE.
    hosts = inventory(tmp_path, ansible_host="127.0.0.1", ansible_port=9,
                      ansible_connection="ssh")
    run = ansible_playbook(ROOT / "playbooks" / playbook, hosts, "-e", f"{PLAYS[playbook]}=0")
    assert run.returncode != 0
    assert f"{PLAYS[playbook]} must be a positive number of hosts" in run.stdout + run.stderr
    assert "UNREACHABLE" not in run.stdout
