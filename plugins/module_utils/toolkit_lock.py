"""One lock file: who holds it (a run of the toolkit), taken and given back atomically.

A lock is a JSON file naming the run that holds it: its id, owner (user@controller), the
controller's ansible-playbook pid and that process's start time, when it started and the
playbook. Taking it is an exclusive create (O_EXCL); taking it over from a run that is
over, or breaking it, replaces it only if the file still names the run the caller saw
(under flock on a sibling file), so two runs never both win. The same code serves the
controller's lock per inventory (plugins/action/toolkit_lock.py) and each host's lock
(plugins/modules/toolkit_lock.py): stdlib only.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from typing import Any, Iterator


def read(path: str) -> dict[str, Any] | None:
    """The record in the lock file, None when there is none. A file that is no record
    (cut short by a crash) is returned as {"run_id": "", "unreadable": True}."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {"run_id": "", "unreadable": True}
    return record if isinstance(record, dict) else {"run_id": "", "unreadable": True}


@contextlib.contextmanager
def _guard(path: str) -> Iterator[None]:
    with open(path + ".flock", "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_new(path: str, record: dict[str, Any], mode: int) -> bool:
    """Create the file holding record; False when it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as err:
        if err.errno == errno.EEXIST:
            return False
        raise
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
        handle.write("\n")
    return True


def acquire(path: str, record: dict[str, Any], replace: str | None = None,
            mode: int = 0o644, folder_mode: int | None = None) -> tuple[bool, dict[str, Any] | None]:
    """Take the lock for record["run_id"].

    Returns (True, None) when this run holds it now (taken, or held already: a playbook
    that imports another takes it twice), else (False, holder). With replace=<run id>,
    a lock still held by that run is replaced (the caller found that run over, or was
    told to break it). With folder_mode, the lock's folder is created if missing: two
    inventory hosts on one machine (a router beside its server) take it at once, so
    finding it missing and creating it must not be two steps."""
    if folder_mode is not None:
        os.makedirs(os.path.dirname(path), mode=folder_mode, exist_ok=True)
    with _guard(path):
        if _write_new(path, record, mode):
            return True, None
        holder = read(path)
        if holder is None:  # released between the two calls
            return (True, None) if _write_new(path, record, mode) else (False, read(path))
        if holder.get("run_id") == record["run_id"]:
            return True, None
        if replace is not None and holder.get("run_id") == replace:
            os.unlink(path)
            return (True, None) if _write_new(path, record, mode) else (False, read(path))
        return False, holder


def release(path: str, run_id: str) -> bool:
    """Give the lock back if run_id holds it; True when it was released."""
    with _guard(path):
        holder = read(path)
        if holder is None or holder.get("run_id") != run_id:
            return False
        os.unlink(path)
        return True


def describe(holder: dict[str, Any]) -> str:
    """Who holds a lock, and since when, in words."""
    if holder.get("unreadable"):
        return "an unreadable lock record (a run that died while writing it)"
    return (f"run {holder.get('run_id', '?')} of {holder.get('owner', '?')} "
            f"(ansible-playbook pid {holder.get('pid', '?')}, "
            f"{holder.get('playbook') or 'a playbook'}) since {holder.get('started', '?')}")


# ---- The run, as the controller sees it (the action and the callback; not the hosts)

def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), "" elsewhere: with
    the pid, it tells a live owner from a new process that reuses its pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_alive(pid: Any, start: str = "") -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except (TypeError, ValueError, OverflowError):
        return False
    return not start or process_start(int(pid)) in ("", start)


# ansible-playbook's options that take no value; every other option takes the next
# argument unless it has "=" (so -e @vars.yml is never taken for a playbook).
_FLAGS = {"-C", "--check", "-D", "--diff", "-b", "--become", "-K", "--ask-become-pass",
          "-k", "--ask-pass", "-J", "--ask-vault-pass", "--ask-vault-password",
          "--syntax-check", "--list-hosts", "--list-tasks", "--list-tags", "--step",
          "--force-handlers", "--flush-cache", "--version", "-h", "--help"}


def top_playbook(argv: list[str]) -> str:
    """The playbook ansible-playbook was started with (its last), as a bare name:
    playbooks/site.yml and kimi_k2.sglang.site are both "site"."""
    names, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = not ("=" in arg or arg in _FLAGS or arg.strip("v") == "-")
        else:
            names.append(arg)
    if not names:
        return ""
    last = os.path.basename(names[-1])
    return last.rsplit(".", 1)[0] if last.endswith((".yml", ".yaml")) else last.rsplit(".", 1)[-1]


def run_record(pid: int, argv: list[str], user: str, host: str, started: str) -> dict[str, Any]:
    """This run of ansible-playbook (pid) as a lock record."""
    start = process_start(pid)
    return {"run_id": f"{user}@{host}:{pid}:{start}", "owner": f"{user}@{host}",
            "controller": host, "pid": pid, "pid_start": start, "started": started,
            "playbook": top_playbook(argv)}


def held_by(lock_dir: str, run_id: str) -> list[str]:
    """The controller lock files under lock_dir that run_id holds."""
    try:
        names = sorted(os.listdir(lock_dir))
    except OSError:
        return []
    return [os.path.join(lock_dir, name) for name in names if name.endswith(".json")
            and (read(os.path.join(lock_dir, name)) or {}).get("run_id") == run_id]
