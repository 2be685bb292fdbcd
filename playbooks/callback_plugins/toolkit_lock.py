"""Give back this run's inventory lock when the run ends, failed or not.

playbooks/tasks/unlock.yml gives the locks back at the end of a run that reaches it;
a run that fails stops before it. Ansible calls every callback's v2_playbook_on_stats at
the end of a run either way, so this callback gives back the controller lock(s) this
run holds (plugins/action/toolkit_lock.py). A later run from this controller then finds
the failed run's host locks "over" and takes them. Beside the playbooks, not in
plugins/callback: Ansible loads a playbook's adjacent callbacks without callbacks_enabled
(which Molecule and AWX set for their own), when CALLBACK_NEEDS_ENABLED is false.
"""
import getpass
import os
import socket
import sys

from ansible.plugins.callback import CallbackBase
from ansible_collections.kimi_k2.sglang.plugins.action.toolkit_lock import lock_dir
from ansible_collections.kimi_k2.sglang.plugins.module_utils import toolkit_lock as lock

DOCUMENTATION = r"""
name: toolkit_lock
type: aggregate
short_description: give back this run's inventory lock at the end of the run
description: See the module docstring; it needs no settings.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kimi_k2.sglang.toolkit_lock"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_stats(self, stats):  # noqa: ARG002 - the end of the run is the event
        run = lock.run_record(os.getpid(), sys.argv, getpass.getuser(), socket.gethostname(), "")
        for path in lock.held_by(lock_dir(), run["run_id"]):
            if lock.release(path, run["run_id"]):
                self._display.vv(f"toolkit_lock: gave back {path}")
