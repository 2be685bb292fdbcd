"""Each role's argument_specs mirror its defaults, and the collection pins match."""
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "defaults").is_dir())


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_mirror_defaults(role):
    """Every entry point's options, together, mirror the role's defaults.

    An ordinary role declares its inputs on main; an internal shared role (toolkit_common)
    declares them on the entry points that take them, and its main takes none.
    """
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    with_default = {}
    for entry, spec in specs["argument_specs"].items():
        for name, option in (spec.get("options") or {}).items():
            assert option.get("description"), f"{entry}: {name} has no description"
            assert name.startswith(role + "_"), f"{entry}: {name} lacks the role prefix"
            assert ("default" in option) != option.get("required", False), f"{entry}: {name}"
            if "default" in option:
                assert with_default.setdefault(name, option["default"]) == option["default"], (
                    f"{name}: entry points disagree on its default")
    assert with_default == defaults


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_has_its_tasks_file(role):
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    for entry in specs["argument_specs"]:
        assert (ROOT / "roles" / role / "tasks" / f"{entry}.yml").is_file(), entry


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_commented(role):
    lines = (ROOT / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", " ", "-")) and ":" in line:
            # A key is documented by the comment block right above it or by its group.
            block = [x for x in lines[max(0, i - 6):i] if x.startswith("#")]
            assert block, f"{role}: {line.split(':')[0]} has no comment"


def test_required_collections_are_the_installed_ones():
    import ansible_collections  # a namespace package: the venv's, and collections/ (ours)
    pins = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    for pin in pins:
        namespace, name = pin["name"].split(".")
        installed = next(Path(p) for p in ansible_collections.__path__
                         if (Path(p) / namespace / name / "MANIFEST.json").exists())
        manifest = json.loads((installed / namespace / name / "MANIFEST.json").read_text())
        assert manifest["collection_info"]["version"] == pin["version"], pin["name"]


def test_the_shared_role_refuses_to_run_directly():
    """toolkit_common is imported by entry point; its main only fails, saying so."""
    tasks = yaml.safe_load((ROOT / "roles" / "toolkit_common" / "tasks" / "main.yml").read_text())
    assert [[k for k in task if k != "name"] for task in tasks] == [["ansible.builtin.fail"]]
    assert "not meant to be run directly" in " ".join(tasks[0]["ansible.builtin.fail"]["msg"].split())
