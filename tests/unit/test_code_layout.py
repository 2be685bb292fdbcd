"""The code's own imports show how it fits together: tests import the plugins as the
collection's (no loading by file path, no path surgery), and no plugin carries an import
shim (a fallback for running without Ansible)."""
import re

import pytest

from conftest import ROOT

# Spelt in pieces so that this file does not find itself.
BY_PATH = ("spec_from_file_" + "location", "sys.path." + "insert")
SHIM = re.compile(r"try:\s*\n\s*(from|import) ansible\b[^\n]*\n\s*except ImportError")


@pytest.mark.parametrize("path", sorted((ROOT / "tests").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_tests_import_the_code_rather_than_load_it_by_path(path):
    text = path.read_text()
    assert not [word for word in BY_PATH if word in text], (
        f"{path.relative_to(ROOT)}: import ansible_collections.kimi_k2.sglang.plugins... "
        "(pytest.ini puts collections/ on the path)")


@pytest.mark.parametrize("path", sorted((ROOT / "plugins").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_ansible_without_a_fallback(path):
    assert not SHIM.search(path.read_text()), (
        f"{path.relative_to(ROOT)}: an import shim; the plugins run under Ansible, and so do "
        "their tests")
