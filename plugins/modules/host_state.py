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
    description: systemd units whose state to return.
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
units: {description: "unit -> {ActiveState, MainPID, NeedDaemonReload, UnitFileState, LoadState, SubState, Result}", type: dict, returned: always}
"""

import grp
import hashlib
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule

UNIT_PROPERTIES = ("ActiveState", "MainPID", "NeedDaemonReload", "UnitFileState", "LoadState",
                   "SubState", "Result")
READ_LIMIT = 65536


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
    """`systemctl show -p A,B unit1 unit2` prints one block per unit, in order, separated
    by blank lines."""
    blocks = [block for block in text.strip("\n").split("\n\n")]
    out = {}
    for unit, block in zip(units, blocks):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        out[unit] = {key: props.get(key, "") for key in UNIT_PROPERTIES}
    return out


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "path", "default": []},
            "read": {"type": "list", "elements": "path", "default": []},
            "packages": {"type": "list", "elements": "str", "default": []},
            "users": {"type": "list", "elements": "str", "default": []},
            "groups": {"type": "list", "elements": "str", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
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
    module.exit_json(**out)


if __name__ == "__main__":
    main()
