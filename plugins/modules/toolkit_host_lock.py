#!/usr/bin/python
"""Ansible module: take or give back this host's toolkit lock."""
from __future__ import annotations

DOCUMENTATION = r"""
module: toolkit_host_lock
short_description: Take or give back the lock that keeps two toolkit runs off one host
description:
  - The host side of the action C(kimi_k2.sglang.toolkit_lock); use that, not this. One
    JSON file names the run that holds the host (run id, owner, controller pid, start
    time, playbook). Taking it is an exclusive create; C(replace) replaces a lock that
    still names that run (one that is over, or that the operator breaks).
  - Reports C(changed=false), as the lock is bookkeeping of the run, not the host's state.
  - In check mode it writes nothing and reports the holder.
options:
  path: {description: The lock file; its directory is made root-only., type: path, default: /var/lib/kimi-k2-toolkit/lock.json}
  state: {description: present takes the lock; absent gives it back if this run holds it., type: str, choices: [present, absent], default: present}
  record: {description: This run (run_id, owner, pid, pid_start, started, playbook, controller)., type: dict, required: true}
  replace: {description: Replace a lock held by this run id., type: str}
"""

EXAMPLES = r"""
- name: Lock the host for this run
  kimi_k2.sglang.toolkit_host_lock:
    record: {run_id: "ops@bastion:4242:123456", owner: ops@bastion, pid: 4242}
"""

RETURN = r"""
held:
  description: Whether this run holds the host's lock now (state=present) or held it (absent).
  type: bool
  returned: always
holder:
  description: The record of the run that holds the lock instead, if any.
  type: dict
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils import toolkit_lock


def main():
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "default": "/var/lib/kimi-k2-toolkit/lock.json"},
                       "state": {"type": "str", "choices": ["present", "absent"],
                                 "default": "present"},
                       "record": {"type": "dict", "required": True},
                       "replace": {"type": "str"}},
        supports_check_mode=True,
    )
    path, record = module.params["path"], module.params["record"]
    if module.check_mode:
        holder = toolkit_lock.read(path)
        mine = holder is not None and holder.get("run_id") == record.get("run_id")
        module.exit_json(changed=False, held=mine, holder=None if mine else holder)
    if module.params["state"] == "absent":
        held = os.path.exists(path) and toolkit_lock.release(path, record["run_id"])
        module.exit_json(changed=False, held=held, holder=None)
    held, holder = toolkit_lock.acquire(path, record, module.params["replace"], mode=0o600,
                                        folder_mode=0o700)
    module.exit_json(changed=False, held=held, holder=holder)


if __name__ == "__main__":
    main()
