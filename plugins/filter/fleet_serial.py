"""Batch sizes (`serial`) for the playbooks that change hosts a batch at a time.

Ansible reads a play's `serial` before any inventory variable exists, so a batch size can
only come from the command line (-e) or the play's own vars, and Ansible takes 0, a
negative number or an empty list silently as "every host in one batch" (and crashes with
a traceback on anything else that is not a number). These filters refuse both traps:
`fleet_serial` validates the value the play's `serial` keyword reads, and
`fleet_serial_unread` names the hosts whose inventory sets a batch size that `serial`
never saw. Pure functions, unit-tested.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

_COUNT = re.compile(r"^\d+$")
_PERCENT = re.compile(r"^(\d+)%$")


def _batch(value: Any) -> int | str | None:
    """One batch size as Ansible takes it (int hosts, or 'N%'); None when invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    if isinstance(value, str):
        text = value.strip()
        if _COUNT.match(text):
            return int(text) if int(text) >= 1 else None
        percent = _PERCENT.match(text)
        if percent and 1 <= int(percent.group(1)) <= 100:
            return f"{int(percent.group(1))}%"
    return None


def fleet_serial(value: Any, name: str) -> int | str | list[int | str]:
    """The batch size for a play's `serial`, or AnsibleFilterError saying what to set.

    Accepts a positive number of hosts (5, "5"), a percentage of the play's hosts from 1%
    to 100% ("25%"), or a non-empty list of those (batches that grow: [1, "10%", "50%"],
    the last size repeats)."""
    items = value if isinstance(value, (list, tuple)) else [value]
    batches = [_batch(item) for item in items]
    if not items or any(batch is None for batch in batches):
        raise AnsibleFilterError(
            f"{name} must be a positive number of hosts per batch (5), a percentage of "
            f"the play's hosts from 1% to 100% ('25%'), or a list of those for batches "
            f"that grow ([1, '10%', '50%']); got {value!r}. (Ansible would run 0, a "
            f"negative number or an empty list as one batch of every host.)")
    return batches if isinstance(value, (list, tuple)) else batches[0]


def _same(left: Any, right: Any) -> bool:
    """Equal as batch sizes: 5 and "5" are the same, [1, '10%'] and (1, '10%') too."""
    def canon(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [canon(item) for item in value]
        return str(value).strip()
    return canon(left) == canon(right)


def fleet_serial_unread(hosts: list[str], hostvars: Mapping[str, Any], name: str,
                        value: Any) -> list[str]:
    """'host: its value' for every host whose inventory sets `name` to something else
    than `value`, the batch size the play runs with.

    hostvars holds inventory variables and extra vars but not play vars, so when the play
    defines the default in its vars, a host listed here has a batch size in the inventory
    (group_vars, host_vars) that `serial` could not read. With -e, every host sees the
    command line's value and none is listed."""
    unread = []
    for host in hosts:
        host_vars = hostvars[host]
        if name in host_vars and not _same(host_vars[name], value):
            unread.append(f"{host}: {host_vars[name]!r}")
    return unread


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "fleet_serial": fleet_serial,
            "fleet_serial_unread": fleet_serial_unread,
        }
