"""Every module's DOCUMENTATION, EXAMPLES and RETURN is YAML that Ansible can read: a
broken block fails only `ansible-doc` and ansible-lint's warning, never a run, so
nothing else would notice it (ansible-test's validate-modules needs the network)."""
from __future__ import annotations

import ast

import pytest
import yaml

from conftest import ROOT

MODULES = sorted((ROOT / "plugins" / "modules").glob("*.py"))
BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def blocks(path):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) in BLOCKS:
            yield node.targets[0].id, node.value.value


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_the_modules_documentation_parses(path):
    found = dict(blocks(path))
    assert set(found) == set(BLOCKS), f"{path.name} lacks {set(BLOCKS) - set(found)}"
    for name, text in found.items():
        yaml.safe_load(text)  # raises, naming line and column
    assert yaml.safe_load(found["DOCUMENTATION"])["module"] == path.stem
