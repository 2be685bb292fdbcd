#!/usr/bin/python
"""Ansible module: wait a while for a model_weights_run job and return its progress."""
from __future__ import annotations

DOCUMENTATION = r"""
module: model_weights_progress
short_description: Read a model_weights_run job's progress, waiting up to C(wait) seconds for it to end
description:
  - Returns as soon as the job has finished or failed, else after C(wait) seconds, so a
    play can print one progress line per interval.
options:
  work_dir: {description: The job's work_dir., type: path, required: true}
  wait: {description: Seconds to wait for the job to end., type: float, default: 30}
"""

EXAMPLES = r"""
- name: Wait for the download, one interval at most
  kimi_k2.sglang.model_weights_progress:
    work_dir: /var/tmp/model-weights
    wait: 30
"""

RETURN = r"""
progress:
  description: state (running, finished, failed, or missing), done_bytes, total_bytes, rate_bytes, eta, elapsed, method.
  type: dict
  returned: always
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule


def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"state": "missing"}


def main():
    module = AnsibleModule(
        argument_spec={"work_dir": {"type": "path", "required": True},
                       "wait": {"type": "float", "default": 30}},
        supports_check_mode=True,
    )
    path = os.path.join(module.params["work_dir"], "progress.json")
    deadline = time.monotonic() + module.params["wait"]
    current = read(path)
    while current["state"] in ("running", "missing") and time.monotonic() < deadline:
        time.sleep(1)
        current = read(path)
    module.exit_json(changed=False, progress=current)


if __name__ == "__main__":
    main()
