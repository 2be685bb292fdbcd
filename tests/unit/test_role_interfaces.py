"""Each role's argument_specs mirror its defaults, and the collection pins match."""
import json
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "defaults").is_dir())


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_mirror_defaults(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    with_default = {k: v["default"] for k, v in options.items() if "default" in v}
    assert with_default == defaults
    for name, option in options.items():
        assert option.get("description"), f"{name} has no description"
        assert name.startswith(role + "_"), f"{name} lacks the role prefix"
        assert ("default" in option) != option.get("required", False), name


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
