"""Compare what plugins/modules/host_state.py read on a host with what a role would write, so the
role skips a task whose result is already in place (no round trip for it).

Every function answers "is it already so?": False whenever the state says too little to
be sure, so that the real module runs and decides.
"""
from __future__ import annotations

import hashlib
from typing import Any

from ansible.errors import AnsibleFilterError


def _entry(state: dict[str, Any], key: str, name: str) -> dict[str, Any]:
    if not isinstance(state, dict) or not isinstance(state.get(key), dict):
        raise AnsibleFilterError(f"host_state filters need a host_state result with '{key}', "
                                 f"got {type(state).__name__}")
    return state[key].get(name) or {}


def host_file_current(state: dict[str, Any], path: str, owner: str, group: str, mode: str,
                      content: str | None = None) -> bool:
    """The file at path exists with this owner, group and mode (an octal string such as
    "0640") and, when content is given, exactly this content (utf-8, as template writes
    it); without content it must be a directory."""
    found = _entry(state, "files", path)
    if not found.get("exists") or (found.get("owner"), found.get("group")) != (owner, group):
        return False
    if found.get("mode") != "%04o" % int(str(mode), 8):
        return False
    if content is None:
        return bool(found.get("isdir"))
    return found.get("checksum") == hashlib.sha1(str(content).encode("utf-8")).hexdigest()


def host_file_exists(state: dict[str, Any], path: str) -> bool:
    return bool(_entry(state, "files", path).get("exists"))


def host_packages_installed(state: dict[str, Any], names: list[str]) -> bool:
    """Every package is installed (the apt module with state=present would do nothing)."""
    _entry(state, "packages", "")  # the shape check
    return all(state["packages"].get(name) is True for name in names)


def host_account_current(state: dict[str, Any], user: str, group: str, home: str,
                         shell: str) -> bool:
    """The account exists with this primary group, home and shell."""
    found_group = _entry(state, "groups", group)
    found_user = _entry(state, "users", user)
    return bool(found_group) and bool(found_user) and \
        found_user.get("gid") == found_group.get("gid") and \
        (found_user.get("home"), found_user.get("shell")) == (home, shell)


def host_unit_running(state: dict[str, Any], unit: str) -> bool:
    """The unit is loaded, enabled, active (or starting) and its file on disk is the one
    systemd loaded: systemd_service with enabled=true, state=started would do nothing."""
    found = _entry(state, "units", unit)
    return found.get("LoadState") == "loaded" and found.get("UnitFileState") == "enabled" \
        and found.get("ActiveState") in ("active", "activating") \
        and found.get("SubState") != "auto-restart" \
        and found.get("NeedDaemonReload") == "no"


def host_unit_stale(state: dict[str, Any], unit: str) -> bool:
    """systemd runs an older version of the unit than the file on disk (a run that wrote
    the unit and failed before the restart): the service needs a reload and a restart."""
    return _entry(state, "units", unit).get("NeedDaemonReload") == "yes"


def host_unit_failed(state: dict[str, Any], unit: str) -> str:
    """systemd's Result for a unit it gave up on (failed: after its start limit, for one)
    or waits to restart after a crash; empty for a unit that runs, starts or is stopped."""
    found = _entry(state, "units", unit)
    if found.get("ActiveState") == "failed" or found.get("SubState") == "auto-restart":
        return found.get("Result") or "failed"
    return ""


class FilterModule:
    def filters(self):
        return {
            "host_file_current": host_file_current,
            "host_file_exists": host_file_exists,
            "host_packages_installed": host_packages_installed,
            "host_account_current": host_account_current,
            "host_unit_running": host_unit_running,
            "host_unit_stale": host_unit_stale,
            "host_unit_failed": host_unit_failed,
        }
