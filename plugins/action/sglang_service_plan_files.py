"""Action sglang_service_plan_files: write one host's plan files on the controller.

playbooks/plan.yml writes a unit, an environment file and a launch command (and, for
multi-node servers, the watchdog's unit and settings) for every host of a fleet. Through
the template and copy modules each file costs the controller a Python process (about
0.5 s of CPU, 2 s per host); this action writes them all inside the task, for no process.
It renders the role's templates itself, as the template action does, so the unit text
keeps one source: the template lookup would deep-copy every variable per file, the
inventory's groups included, which grows with the fleet (a quarter of the plan's CPU on
16 hosts, quadratic in the host count). The templates' compiled code comes from the
cache sglang_service_launch installs (loading that module installs it): compiled once
per run, not once per host.

Arguments:
  dest   the host's plan directory on the controller (created, mode 0755)
  files  a list of {name, content} or {name, src, vars}: file names inside dest, written
         with mode 0644; src is a template of the role (templates/), rendered with the
         task's variables plus vars
  msg    a line shown for the host at any verbosity, as debug shows its msg (optional:
         a debug task of its own would cost every host another task)
  resolve, evaluate
         as for sglang_service_launch: variables templated once each, then arguments
         evaluated by the action; the templates are rendered with the resolved values
Returns changed, files: the names whose content or mode changed, and msg. Check mode
writes nothing and reports what would change.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ansible._internal._templating import _template_vars
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

# One implementation of resolve and evaluate for both actions.
from ansible_collections.kimi_k2.sglang.plugins.action import sglang_service_launch as _launch

DIR_MODE = 0o755
FILE_MODE = 0o644

# The shared fragments the units import (systemd-hardening.j2): where the template action
# finds them through toolkit_common's entry point `unit`, which writes the units.
SHARED_TEMPLATES = Path(__file__).resolve().parents[2] / "roles" / "toolkit_common" / "templates"

ARGUMENT_SPEC = {
    "dest": {"type": "path", "required": True},
    "files": {"type": "list", "elements": "dict", "required": True, "options": {
        "name": {"type": "str", "required": True},
        "content": {"type": "str"},
        "src": {"type": "str"},
        "vars": {"type": "dict", "default": {}},
    }, "required_one_of": [["content", "src"]], "mutually_exclusive": [["content", "src"]]},
    "msg": {"type": "str", "default": None},
}


def _check_names(names: list[str]) -> None:
    for name in names:
        if name in ("", ".", "..") or "/" in name:
            raise ValueError(f"{name!r} is not a file name: each host's plan is one directory")
    if len(set(names)) != len(names):
        raise ValueError(f"a file is listed twice in {names}")


def _is_current(path: Path, data: bytes) -> bool:
    try:
        mode = path.stat().st_mode & 0o7777
        return mode == FILE_MODE and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _replace(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same directory: a reader never sees half."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def write_plan(dest: Path, files: list[dict[str, Any]], check: bool = False) -> list[str]:
    """Write each file into dest unless it already holds that content and mode; return the
    names that changed (or, in check mode, would change)."""
    _check_names([f["name"] for f in files])
    if not check:
        dest.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        if dest.stat().st_mode & 0o7777 != DIR_MODE:  # mkdir's mode is masked by the umask
            dest.chmod(DIR_MODE)
    changed = []
    for entry in files:
        path = dest / entry["name"]
        data = str(entry["content"]).encode("utf-8")
        if _is_current(path, data):
            continue
        changed.append(entry["name"])
        if not check:
            _replace(path, data)
    return changed


class ActionModule(ActionBase):
    # Everything happens on the controller: the host is never contacted.
    _requires_connection = False
    _supports_check_mode = True

    def _render(self, src: str, extra: dict[str, Any], task_vars: dict[str, Any]) -> str:
        """One of the role's templates, rendered as the template lookup renders it, from a
        shallow copy of the variables (the values are only read)."""
        try:
            path = self._find_needle("templates", src)
        except AnsibleError as error:
            raise AnsibleActionFail(f"no template {src!r} for the plan: {error}") from error
        variables = {**task_vars, **_template_vars.generate_ansible_template_vars(
            path=src, fullpath=path, include_ansible_managed="ansible_managed" not in task_vars),
            **extra}
        templar = self._templar.copy_with_new_env(searchpath=[os.path.dirname(path),
                                                              str(SHARED_TEMPLATES)],
                                                  available_variables=variables)
        return templar.template(trust_as_template(self._loader.get_text_file_contents(path)),
                                escape_backslashes=False)

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        resolver, args = _launch.evaluated_arguments(self, ARGUMENT_SPEC, task_vars or {})
        files = [{"name": f["name"], "content": f["content"] if f["src"] is None
                  else self._render(f["src"], f["vars"], dict(resolver.variables))}
                 for f in args["files"]]
        try:
            changed = write_plan(Path(args["dest"]), files, check=self._task.check_mode)
        except (OSError, ValueError) as error:
            raise AnsibleActionFail(f"cannot write the plan into {args['dest']}: {error}") from error
        result.update(changed=bool(changed), dest=args["dest"], files=changed)
        if args["msg"] is not None:
            # The default callback prints a result only with -v, or when it asks for it.
            result.update(msg=args["msg"], _ansible_verbose_always=True)
        return result
