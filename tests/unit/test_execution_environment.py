"""The execution environment for AWX / AAP (execution-environment.yml) carries the
controller's pins: `ansible-builder create` (offline: it only writes the build context)
must put the exact versions of requirements.txt and requirements.yml into the generated
Containerfile and requirement files, every third-party module our controller-side
plugins import, and none of the test tools."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

BUILDER = ROOT / ".venv" / "bin" / "ansible-builder"
# What only the tests and the tool chain use: never in the EE.
TEST_TOOLS = {"ansible", "ansible-lint", "yamllint", "molecule", "molecule-plugins", "pytest",
              "pytest-testinfra", "ansible-builder", "mitogen"}
# Imports that ansible-core itself brings.
CORE = {"ansible", "jinja2", "yaml", "packaging", "cryptography", "resolvelib"}


def pins(text: str) -> dict[str, str]:
    """name -> exact version, for the `name==version` lines of a requirements file."""
    found = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;]+)", line)
            assert match, f"not pinned to one version: {line!r}"
            found[match.group(1).lower()] = match.group(3)
    return found


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ee-context")
    run = subprocess.run([str(BUILDER), "create", "--file", "execution-environment.yml",
                          "--context", str(out),
                          # Else the name depends on whether podman is installed yet.
                          "--output-filename", "Containerfile"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return out


@pytest.fixture(scope="module")
def controller_pins() -> dict[str, str]:
    return pins((ROOT / "requirements.txt").read_text())


def containerfile_arg(context: Path, name: str) -> str:
    match = re.search(rf'^ARG {name}="([^"]*)"$', (context / "Containerfile").read_text(), re.M)
    assert match, f"no ARG {name} in the Containerfile"
    return match.group(1)


def test_ansible_core_and_runner_are_the_controller_pins(context, controller_pins):
    refs = containerfile_arg(context, "ANSIBLE_INSTALL_REFS").split()
    assert refs == [f"ansible-core=={controller_pins['ansible-core']}",
                    f"ansible-runner=={controller_pins['ansible-runner']}"]


def test_python_is_one_ansible_core_runs_on(context):
    # ansible-core 2.19 needs Python 3.11 or newer on the controller.
    version = re.fullmatch(r"/usr/bin/python3\.(\d+)", containerfile_arg(context, "PYCMD"))
    assert version and int(version.group(1)) >= 11


def test_python_packages_are_pinned_as_on_the_controller(context, controller_pins):
    ee = pins((context / "_build" / "requirements.txt").read_text())
    assert ee, "no Python packages in the EE"
    for name, version in ee.items():
        assert controller_pins.get(name) == version, f"{name}=={version} is not requirements.txt's"
    assert not set(ee) & TEST_TOOLS


def test_collections_are_requirements_yml(context):
    ee = yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]
    ours = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    assert {c["name"]: str(c["version"]) for c in ee} == {
        c["name"]: str(c["version"]) for c in ours}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", str(c["version"])) for c in ee)


def test_the_ssh_client_is_installed(context):
    assert "openssh-clients [platform:rpm]" in (context / "_build" / "bindep.txt").read_text()


def controller_imports() -> dict[str, str]:
    """Top-level third-party modules that code running on the controller imports: filter
    and action plugins, and the one module that runs there (the benchmark plots)."""
    files = [*ROOT.glob("plugins/filter/*.py"), *ROOT.glob("plugins/action/*.py"),
             ROOT / "plugins" / "modules" / "sglang_bench_plot.py"]
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                     else [])
            for name in names:
                if name.startswith("ansible_collections.kimi_k2.sglang."):
                    continue  # this collection's own plugins and module_utils
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in CORE:
                    found[top.lower().replace("_", "-")] = path.name
    return found


def test_every_controller_import_is_in_the_ee(context):
    imports = controller_imports()
    assert "matplotlib" in imports  # the scan sees the plot module
    ee = pins((context / "_build" / "requirements.txt").read_text())
    missing = {name: where for name, where in imports.items() if name not in ee}
    assert missing == {}
