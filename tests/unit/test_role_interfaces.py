"""The contracts between roles: each role's argument_specs mirror its defaults and cover
every entry point used through tasks_from, named bare so that Ansible validates it; no
role, playbook, scenario, tool or plugin reads another role's internal (`__<role>_`)
names, and no playbook reads any `__` name; and the collection pins match."""
import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "defaults").is_dir())
ALL_ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
# Where roles are used and their names read: everything but the docs and the tests (a
# unit test may set a filter's internal inputs).
SCANNED = ("roles", "playbooks", "molecule", "tools", "plugins")
ROLE_ACTIONS = {prefix + verb for prefix in ("", "ansible.builtin.", "ansible.legacy.")
                for verb in ("import_role", "include_role")}
PRIVATE = re.compile(r"(?<![A-Za-z0-9_])__([a-z][a-z0-9_]*)")


def argument_specs(role):
    path = ROOT / "roles" / role / "meta" / "argument_specs.yml"
    return yaml.safe_load(path.read_text())["argument_specs"] if path.exists() else {}


def owner(name):
    """The role whose internal name __<name> is (the longest role prefix), or None."""
    roles = [role for role in ALL_ROLES if name.startswith(role + "_")]
    return max(roles, key=len) if roles else None


def scanned_files():
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix != ".md" and "__pycache__" not in path.parts:
                try:
                    yield path, path.read_text()
                except UnicodeDecodeError:
                    continue


class _AnyTagLoader(yaml.SafeLoader):
    """Reads !vault, !unsafe and the like as plain values."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def role_calls(data):
    """Every import_role/include_role argument mapping inside data."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ROLE_ACTIONS and isinstance(value, dict):
                yield value
            yield from role_calls(value)
    elif isinstance(data, list):
        for item in data:
            yield from role_calls(item)


def tasks_from_calls():
    """(file, role, tasks_from as written) for every literal tasks_from."""
    for top in ("roles", "playbooks", "molecule", "tools"):
        for path in sorted((ROOT / top).rglob("*.y*ml")):
            for call in role_calls(yaml.load(path.read_text(), Loader=_AnyTagLoader)):
                role, entry = call.get("name", call.get("role")), call.get("tasks_from")
                if entry is None or "{{" in str(role) + str(entry):
                    continue
                yield str(path.relative_to(ROOT)), role, str(entry)


def tasks_from_targets():
    """{(role, entry point): [files that use it]} for every literal tasks_from."""
    found = {}
    for path, role, entry in tasks_from_calls():
        stem = Path(entry).stem if entry.endswith((".yml", ".yaml")) else entry
        found.setdefault((role, stem), []).append(path)
    return found


TARGETS = tasks_from_targets()


@pytest.mark.parametrize("role", ALL_ROLES)
def test_every_argument_spec_entry_point_has_its_tasks_file(role):
    for entry in argument_specs(role):
        assert (ROOT / "roles" / role / "tasks" / f"{entry}.yml").is_file(), \
            f"{role}: argument_specs entry {entry!r} names no task file"


@pytest.mark.parametrize("role", ALL_ROLES)
def test_argument_specs_mirror_defaults(role):
    """Every option is described, carries the role prefix and is either required or has a
    default; the options with a default, over all entry points, are the role's defaults
    exactly, value for value, and entry points that share an option agree on it.

    An ordinary role declares its inputs on main; an internal shared role (toolkit_common)
    declares them on the entry points that take them, and its main takes none.
    """
    defaults_path = ROOT / "roles" / role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_path.read_text()) if defaults_path.exists() else None) or {}
    with_default = {}
    for entry, spec in argument_specs(role).items():
        description = spec.get("description", [])
        assert all(isinstance(line, str) for line in
                   (description if isinstance(description, list) else [description])), (
            f"{role}:{entry}: description lines must be strings (a ': ' makes a mapping)")
        for name, option in (spec.get("options") or {}).items():
            assert option.get("description"), f"{role}:{entry}: {name} has no description"
            assert name.startswith(role + "_"), f"{role}:{entry}: {name} lacks the role prefix"
            assert ("default" in option) != option.get("required", False), f"{role}:{entry}: {name}"
            if "default" in option:
                assert with_default.setdefault(name, option["default"]) == option["default"], (
                    f"{role}: entry points disagree on the default of {name}")
                assert name in defaults, f"{role}:{entry}: {name} is not in defaults/main.yml"
                assert defaults[name] == option["default"], f"{role}:{entry}: {name}"
    assert with_default == defaults


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


def test_tasks_from_targets_are_found():
    assert ("sglang_service", "endpoint") in TARGETS
    assert ("sglang_rollout", "batch") in TARGETS


# Ansible looks an entry point's spec up by the literal tasks_from value (ansible-core 2.19,
# Role._prepend_validation_task): `tasks_from: plan` is validated against the entry `plan`,
# `tasks_from: plan.yml` against nothing. Hence bare names, and a spec for each.
@pytest.mark.parametrize("target", sorted(TARGETS), ids=lambda t: "%s:%s" % t)
def test_every_tasks_from_entry_point_has_an_argument_spec(target):
    role, entry = target
    assert (ROOT / "roles" / role / "tasks" / (entry + ".yml")).is_file(), TARGETS[target]
    spec = argument_specs(role).get(entry)
    assert spec, (f"roles/{role}/meta/argument_specs.yml has no entry point {entry!r}, "
                  f"used by {TARGETS[target]}")
    assert spec.get("short_description"), f"{role}:{entry} has no short_description"
    assert isinstance(spec.get("options"), dict), f"{role}:{entry}: options (or options: {{}})"


def test_tasks_from_names_the_entry_point_not_its_file():
    with_suffix = sorted(f"{path}: {role} tasks_from {entry}"
                         for path, role, entry in tasks_from_calls()
                         if entry.endswith((".yml", ".yaml")))
    assert not with_suffix, "write the entry point's bare name, which Ansible validates: " \
        + "; ".join(with_suffix)


@pytest.mark.parametrize("path", [p for p, _ in scanned_files()],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_reads_another_roles_internal_names(path):
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "roles":
        mine = rel.parts[1]
    elif rel.parts[0] == "plugins":  # a plugin named after a role is that role's code
        mine = owner(rel.stem + "_") or None
    else:
        mine = None
    text = path.read_text()
    foreign = sorted({"__" + name for name in PRIVATE.findall(text)
                      if owner(name) not in (None, mine)})
    assert not foreign, f"{rel} reads internal names of another role: {foreign}"
    if rel.parts[0] == "playbooks":
        names = sorted({"__" + name for name in PRIVATE.findall(text)})
        assert not names, f"{rel}: a playbook reads only public names, found {names}"


def test_the_shared_role_refuses_to_run_directly():
    """toolkit_common is imported by entry point; its main only fails, saying so."""
    tasks = yaml.safe_load((ROOT / "roles" / "toolkit_common" / "tasks" / "main.yml").read_text())
    assert [[k for k in task if k != "name"] for task in tasks] == [["ansible.builtin.fail"]]
    assert "not meant to be run directly" in " ".join(tasks[0]["ansible.builtin.fail"]["msg"].split())
