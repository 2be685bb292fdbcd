"""Batches on big fleets: which plays run a batch of hosts at a time, and the checks on a
batch size (plugins/filter/fleet_serial.py). tests/integration/test_fleet_serial_plays.py
runs the same plays through ansible-playbook."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible.executor.playbook_executor import PlaybookExecutor

from conftest import ROOT

from ansible_collections.kimi_k2.sglang.plugins.filter import fleet_serial as fleet

PLAYBOOKS = ROOT / "playbooks"
# playbook -> (play, batch size variable, its default). Every other play runs all its
# hosts in one batch.
BATCHED = {
    "gpu_hosts.yml": ("Install the GPU host stack", "gpu_hosts_serial", "25%"),
    "upgrade_gpu_stack.yml": ("Upgrade the GPU host stack", "gpu_upgrade_serial", 1),
}


def plays(path: Path) -> list[dict]:
    return [play for play in yaml.safe_load(path.read_text()) if "hosts" in play]


def imported(path: Path) -> list[Path]:
    """The playbook and every playbook it imports, recursively."""
    found = [path]
    for entry in yaml.safe_load(path.read_text()):
        if "ansible.builtin.import_playbook" in entry:
            found += imported(path.parent / entry["ansible.builtin.import_playbook"])
    return found


def test_only_the_gpu_stack_plays_run_in_batches():
    with_serial = {path.name: play["name"] for path in sorted(PLAYBOOKS.glob("*.yml"))
                   for play in plays(path) if "serial" in play}
    assert with_serial == {name: play for name, (play, _, _) in BATCHED.items()}


@pytest.mark.parametrize("playbook", ["serve.yml", "site.yml", "stage_weights.yml",
                                      "rollout.yml", "verify.yml"])
def test_plays_that_need_every_host_together_have_no_batches(playbook):
    # serve.yml: the ranks of a multi-node server must start within SGLang's 480 s of each
    # other; stage_weights.yml: peers copy from hosts of the same play; rollout.yml batches
    # deployment groups itself; verify.yml: routers read their servers' endpoint facts.
    for path in imported(PLAYBOOKS / playbook):
        for play in plays(path):
            assert "serial" not in play, f"{path.name}: {play['name']}"
            assert play.get("strategy", "linear") == "linear", f"{path.name}: {play['name']}"


@pytest.mark.parametrize("playbook", sorted(BATCHED))
def test_a_batched_play_reads_its_size_through_the_checks(playbook):
    name, variable, default = BATCHED[playbook]
    play = next(p for p in plays(PLAYBOOKS / playbook) if p["name"] == name)
    # The default is a play var, so tasks see the value `serial` saw, and hostvars (which
    # holds no play vars) shows what the inventory says.
    assert play["vars"][variable] == default
    assert play["serial"] == f"{{{{ {variable} | kimi_k2.sglang.fleet_serial('{variable}') }}}}"
    assert play["max_fail_percentage"] == 0
    # The first pre-task, before the locks: the shared batch-size check, told the name.
    check = play["pre_tasks"][0]
    assert check["ansible.builtin.import_tasks"] == "tasks/batch_size.yml"
    assert check["vars"] == {"toolkit_batch_variable": variable}
    assert check["tags"] == ["always"]
    [task] = yaml.safe_load((PLAYBOOKS / "tasks" / "batch_size.yml").read_text())
    assert "ansible.builtin.assert" in task and task["run_once"] is True
    unread = " ".join(" ".join(task["vars"].values()).split())
    assert ("kimi_k2.sglang.fleet_serial_unread(hostvars, toolkit_batch_variable, "
            "lookup('vars', toolkit_batch_variable))") in unread


@pytest.mark.parametrize("value, expected", [
    (1, 1), (8, 8), ("5", 5), (" 12 ", 12), ("25%", "25%"), ("100%", "100%"), ("1%", "1%"),
    ("007", 7), ([1, "10%", "50%"], [1, "10%", "50%"]), (["2", 4], [2, 4]),
])
def test_valid_batch_sizes(value, expected):
    assert fleet.fleet_serial(value, "gpu_upgrade_serial") == expected


@pytest.mark.parametrize("value", [
    0, -1, "0", "-3", "0%", "101%", "12.5%", "2.5", 2.5, "abc", "", None, True, [], [1, 0],
    [1, "x"], "1,2", {"size": 1},
])
def test_invalid_batch_sizes_name_the_variable_and_the_value(value):
    with pytest.raises(AnsibleFilterError) as error:
        fleet.fleet_serial(value, "gpu_upgrade_serial")
    message = str(error.value)
    assert message.startswith("gpu_upgrade_serial must be a positive number of hosts")
    assert f"got {value!r}" in message


def ansible_batches(serial, hosts: int) -> list[int]:
    """Batch sizes as Ansible's own executor cuts a play of `hosts` hosts."""
    executor = SimpleNamespace(_inventory=SimpleNamespace(
        get_hosts=lambda pattern, order: [f"h{i}" for i in range(hosts)]))
    play = SimpleNamespace(hosts="all", order=None,
                           serial=serial if isinstance(serial, list) else [serial])
    return [len(batch) for batch in PlaybookExecutor._get_serialized_batches(executor, play)]


@pytest.mark.parametrize("value", [0, -1, "0", []])
def test_what_ansible_would_run_as_one_batch_of_everything_is_refused(value):
    assert ansible_batches(value, 10) == [10]
    with pytest.raises(AnsibleFilterError):
        fleet.fleet_serial(value, "gpu_upgrade_serial")


@pytest.mark.parametrize("value, expected", [
    (1, [1] * 10), ("3", [3, 3, 3, 1]), ("25%", [2, 2, 2, 2, 2]), ("1%", [1] * 10),
    ([1, "50%"], [1, 5, 4]), ("100%", [10]),
])
def test_ansible_cuts_valid_sizes_into_the_batches_they_say(value, expected):
    assert ansible_batches(fleet.fleet_serial(value, "x"), 10) == expected


def test_unread_names_hosts_whose_inventory_says_otherwise():
    hostvars = {"a": {"gpu_upgrade_serial": 4}, "b": {}, "c": {"gpu_upgrade_serial": "1"},
                "d": {"gpu_upgrade_serial": [1, "10%"]}}
    hosts = ["a", "b", "c", "d"]
    assert fleet.fleet_serial_unread(hosts, hostvars, "gpu_upgrade_serial", 1) == [
        "a: 4", "d: [1, '10%']"]
    # With -e every host sees the command line's value: nothing is unread.
    same = {host: {"gpu_upgrade_serial": "4"} for host in hosts}
    assert fleet.fleet_serial_unread(hosts, same, "gpu_upgrade_serial", 4) == []
    assert fleet.fleet_serial_unread(["d"], hostvars, "gpu_upgrade_serial", (1, "10%")) == []
