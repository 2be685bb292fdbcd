"""Action toolkit_lock: keep two runs of the toolkit off one inventory and one host.

Two operators running serve.yml a second apart both "succeeded", each restarting the
service with its own values; two rollouts shared one rollback directory. Every playbook
that changes hosts takes two locks first (playbooks/tasks/lock.yml) and gives them back
at its end (playbooks/tasks/unlock.yml):
- scope controller: one file per inventory on this controller (under $KIMI_K2_LOCK_DIR,
  default /tmp/kimi-k2-toolkit-locks, shared by its users);
- scope host: /var/lib/kimi-k2-toolkit/lock.json on each host (the module
  toolkit_host_lock), which also keeps out a run from another controller.
A second run is refused at once with who holds the lock (run, user@controller, pid,
playbook) and since when. The run is this ansible-playbook process: the action runs in a
worker forked from it, so its parent's pid (with the process's start time) names the
run, and a playbook that imports another (site.yml: serve.yml, router.yml) takes the
same locks again without effect; only the playbook the run was started with gives them
back (release_for).

A run that fails gives back its controller lock from the callback beside the playbooks
(playbooks/callback_plugins/toolkit_lock.py); its host locks are then known to be over
to a later run from this controller, which takes them over and says so. A lock whose run
was killed (its process gone, its controller lock left) is stale: it is broken only when
the operator says so, with -e toolkit_break_lock=true. A live run on this controller is
never broken. A host lock of another controller's run cannot be checked from here: it is
refused, and broken only with toolkit_break_lock.

In check mode nothing is taken or given back; a run that holds a lock is reported.
"""
from __future__ import annotations

import getpass
import hashlib
import os
import socket
import sys
import time
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible_collections.kimi_k2.sglang.plugins.module_utils import toolkit_lock as lock

DEFAULT_LOCK_DIR = "/tmp/kimi-k2-toolkit-locks"
# The host's lock file (the variable toolkit_host_lock_path moves it).
DEFAULT_HOST_LOCK = "/var/lib/kimi-k2-toolkit/lock.json"
ARGUMENT_SPEC = {
    "scope": {"type": "str", "choices": ["controller", "host"], "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "break_lock": {"type": "bool", "default": False},
    "release_for": {"type": "str", "default": ""},
}
BREAK = "-e toolkit_break_lock=true"


def lock_dir() -> str:
    return os.environ.get("KIMI_K2_LOCK_DIR") or DEFAULT_LOCK_DIR


def controller_lock_path(sources: list[str]) -> str:
    """One lock file per inventory (its sources' real paths), readable by name."""
    paths = sorted(os.path.realpath(s) if os.path.exists(s) else s for s in sources)
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
    name = "-".join(os.path.basename(p.rstrip("/")) or "inventory" for p in paths)[:60]
    return os.path.join(lock_dir(), f"{name}-{digest}.json")


def this_run(started: str) -> dict[str, Any]:
    return lock.run_record(os.getppid(), sys.argv, getpass.getuser(), socket.gethostname(),
                           started)


def over(holder: dict[str, Any], here: str) -> str:
    """How the holding run stands, as seen from this controller: live, over (it ended
    and gave back its controller lock), stale (killed: its controller lock is left), or
    unknown (another controller's)."""
    if holder.get("unreadable"):
        return "stale"
    if holder.get("controller") != here:
        return "unknown"
    if lock.process_alive(holder.get("pid"), holder.get("pid_start") or ""):
        return "live"
    return "stale" if lock.held_by(lock_dir(), holder.get("run_id", "")) else "over"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        task_vars = task_vars or {}
        record = this_run(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if args["state"] == "absent":
            if args["release_for"] and record["playbook"] != args["release_for"]:
                result.update(skipped=True, msg=f"the run's playbook {record['playbook']} "
                              "gives its locks back at its own end")
                return result
            return {**result, **self._release(args["scope"], record, task_vars)}
        if self._task.check_mode:
            return {**result, **self._peek(args["scope"], record, task_vars)}
        if args["scope"] == "controller":
            return {**result, **self._take_controller(record, args["break_lock"], task_vars)}
        return {**result, **self._take_host(record, args["break_lock"], task_vars)}

    # ------------------------------------------------------------------ controller
    def _take_controller(self, record: dict[str, Any], break_lock: bool,
                         task_vars: dict[str, Any]) -> dict[str, Any]:
        path = controller_lock_path(task_vars.get("ansible_inventory_sources") or ["inventory"])
        if not os.path.isdir(lock_dir()):
            # Shared by the controller's users, like /tmp: everyone may create a lock,
            # only its owner remove it.
            os.makedirs(lock_dir(), exist_ok=True)
            os.chmod(lock_dir(), 0o1777)
        held, holder = lock.acquire(path, record)
        if held:
            return {"changed": False, "msg": f"{path}: held by this run {record['run_id']}"}
        state = over(holder, record["controller"])
        if state == "live":
            raise AnsibleActionFail(
                f"Another run holds this inventory: {lock.describe(holder)} ({path}). "
                "Wait until it ends; a live run is never broken.")
        if state in ("stale", "over") and not break_lock:
            raise AnsibleActionFail(
                f"This inventory's lock is held by {lock.describe(holder)}, whose process is "
                f"gone (a run that was killed) ({path}). If no run of the toolkit is working "
                f"on this inventory, break it: {BREAK}.")
        if state == "unknown" and not break_lock:
            raise AnsibleActionFail(
                f"This inventory's lock ({path}) is held by {lock.describe(holder)} of "
                f"another controller. Wait until it ends, or if it is gone: {BREAK}.")
        held, holder = lock.acquire(path, record, replace=holder.get("run_id"))
        if not held:
            raise AnsibleActionFail(f"Another run took this inventory's lock first: "
                                    f"{lock.describe(holder)} ({path}).")
        return {"changed": False, "warnings": [f"broke the inventory lock of a run that is "
                                               f"gone, per toolkit_break_lock ({path})"],
                "msg": f"{path}: held by this run {record['run_id']}"}

    # ------------------------------------------------------------------ host
    def _host_module(self, task_vars: dict[str, Any], **args: Any) -> dict[str, Any]:
        args["path"] = task_vars.get("toolkit_host_lock_path") or DEFAULT_HOST_LOCK
        out = self._execute_module(module_name="kimi_k2.sglang.toolkit_host_lock",
                                   module_args=args, task_vars=task_vars)
        if out.get("failed"):
            # A module that crashed has no msg: its exception says why.
            why = out.get("msg") or (out.get("exception") or out.get("module_stderr") or "")
            raise AnsibleActionFail(f"the host lock module failed: {why.strip()[-2000:]}",
                                    result=out)
        return out

    def _take_host(self, record: dict[str, Any], break_lock: bool,
                   task_vars: dict[str, Any]) -> dict[str, Any]:
        host = task_vars.get("inventory_hostname", "?")
        out = self._host_module(task_vars, record=record)
        if out["held"]:
            return {"changed": False, "msg": f"{host}: held by this run {record['run_id']}"}
        holder = out["holder"] or {}
        state = over(holder, record["controller"])
        warnings = []
        if state == "live":
            raise AnsibleActionFail(f"{host} is held by another run: {lock.describe(holder)}. "
                                    "Wait until it ends; a live run is never broken.")
        if state == "over":
            warnings.append(f"{host}: took over the lock of {lock.describe(holder)}, which "
                            "ended (failed) without giving it back")
        elif not break_lock:
            why = ("whose process is gone (a run that was killed)" if state == "stale"
                   else "of another controller, which this one cannot check")
            raise AnsibleActionFail(f"{host} is held by {lock.describe(holder)}, {why}. If "
                                    f"no run of the toolkit is working on it, break it: {BREAK}.")
        else:
            warnings.append(f"{host}: broke the lock of {lock.describe(holder)}, per "
                            "toolkit_break_lock")
        out = self._host_module(task_vars, record=record, replace=holder.get("run_id", ""))
        if not out["held"]:
            raise AnsibleActionFail(f"{host}: another run took the lock first: "
                                    f"{lock.describe(out['holder'] or {})}.")
        return {"changed": False, "warnings": warnings,
                "msg": f"{host}: held by this run {record['run_id']}"}

    # ------------------------------------------------------------------ check, release
    def _peek(self, scope: str, record: dict[str, Any], task_vars: dict[str, Any]) -> dict:
        if scope == "controller":
            holder = lock.read(controller_lock_path(
                task_vars.get("ansible_inventory_sources") or ["inventory"]))
        else:
            holder = self._host_module(task_vars, record=record)["holder"]
        if not holder or holder.get("run_id") == record["run_id"]:
            return {"changed": False, "msg": "free (check mode takes no lock)"}
        return {"changed": False, "msg": "check mode takes no lock",
                "warnings": [f"{scope} lock held by {lock.describe(holder)}: what this check "
                             "shows may change under it"]}

    def _release(self, scope: str, record: dict[str, Any], task_vars: dict[str, Any]) -> dict:
        if self._task.check_mode:
            return {"changed": False, "msg": "check mode took no lock"}
        if scope == "controller":
            path = controller_lock_path(task_vars.get("ansible_inventory_sources") or ["inventory"])
            released = lock.release(path, record["run_id"]) if os.path.exists(path) else False
        else:
            released = self._host_module(task_vars, record=record, state="absent")["held"]
        return {"changed": False, "released": released,
                "msg": "released" if released else "this run held no such lock"}
