"""Mitogen as an opt-in strategy: tools/mitogen-env prints the environment for the
venv's pinned mitogen, and with it ansible-core (requirements.txt's pin) runs modules in
a Mitogen context; without it, as AnsiballZ payloads. Local connection only: this proves
that the strategy loads, not the speed-up over SSH (README, Big fleets)."""
from __future__ import annotations

import os
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "tools" / "mitogen-env"
PLAY = """\
- name: Name the process that runs the modules
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Read the command line of the module's parent process
      ansible.builtin.shell: tr '\\0' ' ' < /proc/$(cut -d' ' -f4 /proc/$$/stat)/cmdline
      changed_when: false
      register: parent
    - name: Print it
      ansible.builtin.debug:
        msg: "PARENT {{ parent.stdout }}"
"""


def mitogen_env(**env) -> subprocess.CompletedProcess:
    return subprocess.run([str(HELPER)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, check=False)


def exports(text: str) -> dict[str, str]:
    return dict(re.findall(r"^export (ANSIBLE_\w+)=(\S+)$", text, re.M))


def test_the_helper_prints_the_venvs_strategy_plugins():
    run = mitogen_env()
    assert run.returncode == 0, run.stderr
    env = exports(run.stdout)
    assert len(run.stdout.splitlines()) == 2
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    plugins = Path(env["ANSIBLE_STRATEGY_PLUGINS"])
    assert plugins.is_relative_to(ROOT / ".venv")
    assert (plugins / "mitogen_linear.py").is_file()


def test_the_venv_runs_the_pinned_mitogen():
    pinned = re.search(r"^mitogen==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and version("mitogen") == pinned.group(1)


def test_the_helper_fails_loudly_without_mitogen(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 1\n")
    python.chmod(0o755)
    run = mitogen_env(PYTHON=str(python))
    assert run.returncode != 0
    assert run.stdout == ""
    assert "has no mitogen" in run.stderr


@pytest.mark.parametrize("with_mitogen", [True, False], ids=["mitogen", "plain"])
def test_modules_run_in_a_mitogen_context_only_when_opted_in(with_mitogen, tmp_path):
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "hosts.yml").write_text("all: {}\n")  # implicit localhost
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    for name in ("ANSIBLE_STRATEGY", "ANSIBLE_STRATEGY_PLUGINS"):
        env.pop(name, None)
    if with_mitogen:
        env.update(exports(mitogen_env().stdout))
    run = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i",
                          str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
                         capture_output=True, text=True, env=env, timeout=180, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    parent = re.search(r"PARENT (.*)", run.stdout).group(1)
    assert ("(mitogen:" in parent) is with_mitogen, parent
    assert ("AnsiballZ_command.py" in parent) is not with_mitogen, parent
