"""The test bed reaches its hosts over SSH, the way production does, everywhere.

The Molecule base config and the demo inventory state the same connection settings in two
places (Molecule's driver sets the podman connection per host, which only
provisioner.connection_options overrides); these tests keep them equal and keep the podman
connection from coming back in any scenario, inventory or verify playbook.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent for p in (ROOT / "molecule").glob("*/molecule.yml"))
SSH_CONFIG = "-F /var/cache/kimi-k2-testbed/ssh/config"


def load(path: Path):
    return yaml.safe_load(path.read_text())


def test_molecule_and_demo_connect_alike():
    base = load(ROOT / ".config/molecule/config.yml")["provisioner"]["connection_options"]
    demo = load(ROOT / "inventories/demo/group_vars/all/connection.yml")
    assert base == demo
    assert base["ansible_connection"] == "ssh"
    assert base["ansible_ssh_common_args"] == SSH_CONFIG


def test_setup_writes_the_config_the_inventories_name():
    setup = (ROOT / "tools/testbed/setup.yml").read_text()
    assert "testbed_ssh_dir: /var/cache/kimi-k2-testbed/ssh\n" in setup
    assert 'dest: "{{ testbed_ssh_dir }}/config"' in setup


def test_pipelining_and_control_persist_are_on():
    cfg = (ROOT / "ansible.cfg").read_text()
    assert "\npipelining = true\n" in cfg
    assert "ControlPersist=" in cfg


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_scenario_uses_the_shared_base(scenario: Path):
    config = load(scenario / "molecule.yml")
    # Stated once in .config/molecule/config.yml; a scenario repeating them would drift.
    for key in ("dependency", "driver", "verifier"):
        assert key not in config, f"{scenario.name} repeats {key}"
    provisioner = config.get("provisioner", {})
    assert "connection_options" not in provisioner
    assert "ANSIBLE_CONFIG" not in provisioner.get("env", {})
    # Every scenario's converge tests the plain ssh plugin (fleet's second converge
    # runs under Mitogen, from its tests).
    assert "ANSIBLE_STRATEGY" not in provisioner.get("env", {})


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.name)
def test_scenario_verifies_its_connection_first(scenario: Path):
    plays = load(scenario / "verify.yml")
    assert plays[0].get("ansible.builtin.import_playbook") == "../../tools/testbed/check_connection.yml"


def test_no_inventory_uses_the_podman_connection():
    files = [*ROOT.glob("molecule/**/*.yml"), *ROOT.glob("inventories/demo/**/*.yml")]
    offenders = [str(f.relative_to(ROOT)) for f in files
                 if "ansible_connection: podman" in f.read_text()
                 or "containers.podman.podman\n" in f.read_text()]
    assert offenders == []


def test_make_molecule_runs_every_scenario():
    makefile = (ROOT / "Makefile").read_text()
    [line] = [l for l in makefile.splitlines() if l.startswith("SCENARIOS ?=")]
    assert sorted(line.split("?=")[1].split()) == sorted(p.name for p in SCENARIOS)


def test_each_scenario_takes_its_locks_in_its_own_emptied_folder(tmp_path: Path):
    """molecule-lanes gives each scenario its own KIMI_K2_LOCK_DIR under build/, emptied
    before it starts: CI refused a scenario's first playbook on the lock that a killed run
    of the same inventory path had left in /tmp on the machine CI's was copied from."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "testbed").symlink_to(ROOT / "tools" / "testbed")
    (tmp_path / "tools" / "timed").symlink_to(ROOT / "tools" / "timed")
    for scenario in ("one", "two"):
        (tmp_path / "molecule" / scenario).mkdir(parents=True)
        (tmp_path / "molecule" / scenario / "molecule.yml").write_text(f"network: {scenario}\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The stand-ins: no container on any network; each `molecule test` records the folder
    # it was given and what it held, then leaves a lock behind, like a run that was killed.
    (bin_dir / "podman").write_text("#!/bin/sh\n")
    (bin_dir / "molecule").write_text(
        '#!/bin/sh\necho "$3 $KIMI_K2_LOCK_DIR $(ls -A "$KIMI_K2_LOCK_DIR" 2>/dev/null | wc -l)"'
        ' >> "$SEEN"\nmkdir -p "$KIMI_K2_LOCK_DIR" && touch "$KIMI_K2_LOCK_DIR/inventory-x.json"\n')
    for stand_in in bin_dir.iterdir():
        stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SEEN": str(tmp_path / "seen"),
           "KIMI_K2_LOCK_DIR": "/tmp/kimi-k2-toolkit-locks"}
    for _ in range(2):
        subprocess.run([str(tmp_path / "tools" / "testbed" / "molecule-lanes"), "2", "one", "two"],
                       cwd=tmp_path, env=env, check=True, capture_output=True)
    seen = sorted((tmp_path / "seen").read_text().splitlines())
    assert seen == [f"{s} {tmp_path}/build/locks/{s} 0" for s in ("one", "one", "two", "two")]
