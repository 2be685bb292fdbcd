#!/usr/bin/python
"""Ansible module: wait a while for a background job and return its progress."""
from __future__ import annotations

DOCUMENTATION = r"""
module: job_progress
short_description: Read a background job's progress, waiting up to C(wait) seconds for it to end
description:
  - Reads C(work_dir)/progress.json, which a job run through plugins/module_utils/background_job.py
    (model_weights_run, sglang_bench_serving) keeps current. Returns as soon as the job
    has finished or failed, else after C(wait) seconds, so a play can print one progress
    line per interval.
  - C(message) is the caller's line, a Python format string over the progress fields
    (C({state}), C({elapsed}) and the job's own); a field the progress lacks reads C(?).
options:
  work_dir: {description: The job's work_dir., type: path, required: true}
  wait: {description: Seconds to wait for the job to end., type: float, default: 30}
  message: {description: Format string of the returned line; empty returns no line., type: str, default: ""}
"""

EXAMPLES = r"""
- name: Wait for the benchmark run, one interval at most
  kimi_k2.sglang.job_progress:
    work_dir: /var/tmp/sglang-benchmark/latency
    wait: 30
    message: "latency {state}: {done}/{total} requests, {elapsed} s"
"""

RETURN = r"""
progress:
  description: The job's progress, state (running, finished, failed, or missing while there is none yet), elapsed and the job's own fields.
  type: dict
  returned: always
line:
  description: C(message) filled from the progress.
  type: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.background_job import wait_progress


class _Fields(dict):
    def __missing__(self, key):
        return "?"


def main():
    module = AnsibleModule(
        argument_spec={"work_dir": {"type": "path", "required": True},
                       "wait": {"type": "float", "default": 30},
                       "message": {"type": "str", "default": ""}},
        supports_check_mode=True,
    )
    current = wait_progress(module.params["work_dir"], module.params["wait"])
    try:
        line = module.params["message"].format_map(_Fields(current))
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        module.fail_json(msg="message %r is not a format string over the progress: %s"
                         % (module.params["message"], exc), progress=current)
    module.exit_json(changed=False, progress=current, line=line)


if __name__ == "__main__":
    main()
