#!/usr/bin/python
"""Ansible module: what a role needs to know about a host, in one round trip. Reads only."""
from __future__ import annotations

DOCUMENTATION = r"""
module: host_state
short_description: Read files, small markers, packages, accounts and systemd units at once
description:
  - A no-op converge spends most of its time on round trips (a template task alone stats
    its destination and then sets its attributes). This module answers everything a role
    asks before deciding what to change, in one call; the role then skips the tasks whose
    result is already in place (plugins/filter/host_state.py compares).
  - Read-only; a missing file, package, account or unit is reported, never an error.
options:
  files:
    description: Paths to stat (sha1 of regular files, as the copy module computes).
    type: list
    elements: path
    default: []
  read:
    description: Small text files (markers) whose content to return; at most 64 KiB each.
    type: list
    elements: path
    default: []
  packages:
    description: dpkg packages whose install state to return.
    type: list
    elements: str
    default: []
  users:
    description: Accounts whose passwd entry to return.
    type: list
    elements: str
    default: []
  groups:
    description: Groups whose gid to return.
    type: list
    elements: str
    default: []
  units:
    description:
      - systemd units whose state to return, with the drop-ins that change each one (loaded
        or not yet loaded, from /etc and /run).
    type: list
    elements: str
    default: []
  main_process:
    description:
      - Also return the command line of each unit's running main process. Only for units
        whose command line holds no secret (SGLang's key is in its --config file).
    type: bool
    default: false
  environ:
    description:
      - Environment variables to read from each unit's running main process (with
        main_process; root reads any process, others only their own). Only these names
        come back, so a secret in the process's environment never leaves the host.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Read the unit, its environment file and the service's state
  kimi_k2.sglang.host_state:
    files: [/etc/systemd/system/sglang.service, /etc/sglang/sglang.env]
    units: [sglang.service]
  register: service_state
"""

RETURN = r"""
files: {description: "path -> {exists, isdir, mode ('0644'), owner, group, checksum (sha1, regular files)}", type: dict, returned: always}
read: {description: path -> content (empty when missing or unreadable)., type: dict, returned: always}
packages: {description: package -> true when dpkg has it installed., type: dict, returned: always}
users: {description: "name -> {uid, gid, home, shell}; absent accounts are left out", type: dict, returned: always}
groups: {description: "name -> {gid}; absent groups are left out", type: dict, returned: always}
units:
  description: >-
    unit -> {ActiveState, MainPID, NeedDaemonReload, UnitFileState, LoadState, SubState, Result,
    DropInPaths,
    dropins (path of each drop-in of the unit -> the settings it assigns), cmdline (the main
    process's argv, with main_process, while one runs), environ (the asked variables it has,
    when readable)}
  type: dict
  returned: always
"""

import grp
import hashlib
import os
import pwd
import stat
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils import systemd_show

UNIT_PROPERTIES = ("ActiveState", "MainPID", "NeedDaemonReload", "UnitFileState", "LoadState",
                   "SubState", "Result",
                   "DropInPaths")
READ_LIMIT = 65536
# Where drop-ins that systemd has not loaded yet (no daemon-reload since) would be.
DROPIN_ROOTS = ("/etc/systemd/system", "/run/systemd/system")


def _name(lookup, ident):
    try:
        return lookup(ident)[0]
    except KeyError:  # an id without a name: report the number, as ls does
        return str(ident)


def file_state(path):
    try:
        st = os.stat(path)
    except OSError:
        return {"exists": False}
    out = {"exists": True, "isdir": stat.S_ISDIR(st.st_mode),
           "mode": "%04o" % stat.S_IMODE(st.st_mode),
           "owner": _name(pwd.getpwuid, st.st_uid), "group": _name(grp.getgrgid, st.st_gid)}
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        out["checksum"] = digest.hexdigest()
    return out


def read_small(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(READ_LIMIT)
    except (OSError, UnicodeDecodeError):
        return ""


def accounts(users, groups):
    found_users, found_groups = {}, {}
    for name in users:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        found_users[name] = {"uid": entry.pw_uid, "gid": entry.pw_gid,
                             "home": entry.pw_dir, "shell": entry.pw_shell}
    for name in groups:
        try:
            found_groups[name] = {"gid": grp.getgrnam(name).gr_gid}
        except KeyError:
            continue
    return found_users, found_groups


def parse_dpkg(text):
    """`dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n'` -> package -> installed."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            # "ii": selected for install and installed; anything else needs the apt module.
            found[parts[0].split(":")[0]] = parts[1] == "ii"
    return found


def parse_systemctl_show(text, units):
    """`systemctl show -p A,B unit1 unit2`, unit by unit (module_utils/systemd_show.py)."""
    return systemd_show.parse_show(text, units, UNIT_PROPERTIES)


def dropin_settings(path):
    """The names of the settings a drop-in assigns ("ExecStart", "Environment"), sorted."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(READ_LIMIT)
    except OSError:
        return []
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line and line[0] not in "#;[" and "=" in line:
            names.add(line.split("=", 1)[0].strip())
    return sorted(names)


def unit_dropins(unit, loaded, roots=DROPIN_ROOTS):
    """path -> settings of every drop-in of this unit: those systemd loaded (DropInPaths,
    only from <unit>.d directories: service.d ones apply to every service) and those
    waiting in <root>/<unit>.d for a daemon-reload."""
    own = unit + ".d"
    paths = {p for p in loaded.split() if os.path.basename(os.path.dirname(p)) == own}
    for root in roots:
        folder = os.path.join(root, own)
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        paths.update(os.path.join(folder, n) for n in names if n.endswith(".conf"))
    return {p: dropin_settings(p) for p in sorted(paths)}


def parse_environ(raw, names):
    """The asked variables of a /proc/<pid>/environ reading (NUL-separated NAME=value)."""
    found = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        key = name.decode("utf-8", "replace")
        if sep and key in names:
            found[key] = value.decode("utf-8", "replace")
    return found


def main_process(pid, environ_names, proc="/proc"):
    """cmdline (and the asked environment variables, when readable) of a running process."""
    out = {}
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as f:
            raw = f.read()
    except OSError:  # it just exited
        return out
    out["cmdline"] = [arg.decode("utf-8", "replace") for arg in raw.split(b"\0")[:-1]]
    if environ_names:
        raw = read_environ(os.path.join(proc, str(pid)))
        if raw is not None:  # else left out, so that a caller cannot mistake it
            out["environ"] = parse_environ(raw, set(environ_names))
    return out


def read_environ(folder):
    """A process's environ; as root without CAP_SYS_PTRACE (a container), read as the
    process's own user, which the kernel lets read it. None when unreadable."""
    path = os.path.join(folder, "environ")
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:
        if os.geteuid() != 0:
            return None
    except OSError:
        return None
    try:
        owner = os.stat(folder)
        done = subprocess.run(["cat", path], user=owner.st_uid, group=owner.st_gid,
                              extra_groups=[], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "path", "default": []},
            "read": {"type": "list", "elements": "path", "default": []},
            "packages": {"type": "list", "elements": "str", "default": []},
            "users": {"type": "list", "elements": "str", "default": []},
            "groups": {"type": "list", "elements": "str", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
            "main_process": {"type": "bool", "default": False},
            "environ": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    p = module.params
    out = {"changed": False,
           "files": {path: file_state(path) for path in p["files"]},
           "read": {path: read_small(path) for path in p["read"]},
           "packages": {name: False for name in p["packages"]},
           "units": {}}
    out["users"], out["groups"] = accounts(p["users"], p["groups"])
    if p["packages"]:
        # rc 1 when some package is unknown to dpkg: the others are still printed.
        _, stdout, _ = module.run_command(
            ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n"] + p["packages"])
        out["packages"].update(parse_dpkg(stdout))
    if p["units"]:
        rc, stdout, _ = module.run_command(
            ["systemctl", "show", "--property", ",".join(UNIT_PROPERTIES), "--"] + p["units"])
        if rc == 0:
            out["units"] = parse_systemctl_show(stdout, p["units"])
        for unit, found in out["units"].items():
            found["dropins"] = unit_dropins(unit, found["DropInPaths"])
            if p["main_process"] and found["MainPID"] not in ("", "0"):
                found.update(main_process(found["MainPID"], p["environ"]))
    module.exit_json(**out)


if __name__ == "__main__":
    main()
