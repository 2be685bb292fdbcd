"""Give back this run's inventory lock when the run ends, failed or not.

playbooks/tasks/unlock.yml gives the locks back at the end of a run that reaches it;
a run that fails stops before it. Ansible calls every callback's v2_playbook_on_stats at
the end of a run whose tasks failed, so this callback gives back the controller lock(s)
this run holds (plugins/action/toolkit_lock.py). A run that aborts with "ERROR!" (an
undefined variable in a play's hosts, a play that does not parse) ends without that
call: an exit hook gives them back then. Only a killed run (SIGKILL, a lost controller)
leaves its lock, which is then stale and broken only on the operator's word. A later run
from this controller finds the failed run's host locks "over" and takes them. Beside the playbooks, not in
plugins/callback: Ansible loads a playbook's adjacent callbacks without callbacks_enabled
(which Molecule and AWX set for their own), when CALLBACK_NEEDS_ENABLED is false.
"""
import atexit
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

    _pid = 0

    def v2_playbook_on_start(self, playbook):  # noqa: ARG002 - the start of the run is the event
        if not self._pid:
            self._pid = os.getpid()
            atexit.register(self._give_back)

    def v2_playbook_on_stats(self, stats):  # noqa: ARG002 - the end of the run is the event
        self._give_back()

    def _give_back(self):
        if os.getpid() != self._pid:  # a forked worker inherits the hook: not its lock
            return
        run = lock.run_record(self._pid, sys.argv, getpass.getuser(), socket.gethostname(), "")
        for path in lock.held_by(lock_dir(), run["run_id"]):
            if lock.release(path, run["run_id"]):
                self._display.vv(f"toolkit_lock: gave back {path}")
