"""requirements.yml names exactly the collections the code uses, at the versions the pinned
`ansible` package of requirements.txt bundles (CI has no Galaxy, so those are the ones
that run)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from conftest import ROOT

# Where a collection can be referenced: everything we ship or run, not what we install.
SOURCES = ["playbooks", "roles", "tools", "molecule", "bench", "inventories", ".config",
           "plugins", "meta", "ansible.cfg"]
FQCN = re.compile(r"\b([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*\b")
# Molecule's podman driver runs containers.podman modules from its own playbooks.
IMPLIED = {"containers.podman"}


def listed() -> dict[str, str]:
    data = yaml.safe_load((ROOT / "requirements.yml").read_text())
    return {c["name"]: str(c["version"]) for c in data["collections"]}


def bundled(name: str) -> str:
    namespace, collection = name.split(".")
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    manifest = site / "ansible_collections" / namespace / collection / "MANIFEST.json"
    return json.loads(manifest.read_text())["collection_info"]["version"]


def referenced() -> set[str]:
    found = set(IMPLIED)
    for source in SOURCES:
        path = ROOT / source
        # Scripts without a suffix (tools/, bench/) count too: they run playbooks.
        files = [path] if path.is_file() else [
            f for f in path.rglob("*") if f.is_file()
            and f.suffix in {".yml", ".yaml", ".py", ".j2", ".cfg", ""}]
        for file in files:
            for namespace, collection in FQCN.findall(file.read_text(errors="replace")):
                if namespace not in {"ansible"} or collection not in {"builtin", "legacy"}:
                    found.add(f"{namespace}.{collection}")
    return found


def installed_collections() -> set[str]:
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    root = site / "ansible_collections"
    return {f"{ns.name}.{c.name}" for ns in root.iterdir() if ns.is_dir()
            for c in ns.iterdir() if (c / "MANIFEST.json").exists()}


def test_requirements_yml_lists_exactly_the_collections_the_code_references():
    # Only names of installed collections count: "sglang_service.launch.argv" is a variable.
    used = referenced() & installed_collections()
    assert set(listed()) == used


def test_every_collection_is_pinned_to_the_version_the_pinned_ansible_package_bundles():
    for name, version in listed().items():
        assert bundled(name) == version, f"{name}: requirements.yml {version}, bundled {bundled(name)}"


def test_the_ansible_package_that_bundles_them_is_pinned_in_requirements_txt():
    text = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^ansible==\d+\.\d+\.\d+$", text, re.M)
