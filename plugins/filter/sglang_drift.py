"""Does the SGLang server run what the role would write now? The service role (restart),
the rollout plan, status.yml and the verify role ask the same questions of one host_state
reading (plugins/modules/host_state.py):

- sglang_service_fingerprint: one digest of everything that defines the running server
  (the rendered unit, environment file, secrets file, launcher, SGLang version). The role
  writes it into the environment file, so the running process carries the digest of the
  files it was started from.
- sglang_service_drift: why the running server differs from the files the role renders
  (another fingerprint, a unit systemd has not reloaded, drop-ins the toolkit did not write).
- sglang_running_argv_problems: how the running command line differs from the rendered
  argv, and which drop-in (or stale unit) explains it.
"""
from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.kimi_k2.sglang.plugins.module_utils.sha256 import sha256_bytes


def sglang_service_fingerprint(parts: list[Any]) -> str:
    """sha256 over the parts, each length-prefixed (no two lists share a digest)."""
    if not isinstance(parts, list):
        raise AnsibleFilterError(f"sglang_service_fingerprint needs a list of strings, got "
                                 f"{type(parts).__name__}")
    data = b"".join(b"%d:%s\n" % (len(p), p) for p in (str(part).encode("utf-8") for part in parts))
    return sha256_bytes(data)


def _unit(state: dict[str, Any], unit: str) -> dict[str, Any]:
    if not isinstance(state, dict) or not isinstance(state.get("units"), dict):
        raise AnsibleFilterError(f"the drift filters need a host_state result with 'units', "
                                 f"got {type(state).__name__}")
    return state["units"].get(unit) or {}


def _running(found: dict[str, Any]) -> bool:
    return found.get("ActiveState") in ("active", "activating") \
        and str(found.get("MainPID", "0")) not in ("", "0")


def sglang_service_drift(state: dict[str, Any], unit: str, fingerprint: str, variable: str,
                         managed_dropins: list[str]) -> dict[str, Any]:
    """restart: the running server was not started from what the role renders now (its
    fingerprint differs, or systemd has not reloaded the unit on disk); a run restarts it
    whatever else it changed. unknown_dropins: drop-ins of the unit the role did not write
    (their file name is not in managed_dropins). reasons: both, in words; drift: any."""
    found = _unit(state, unit)
    reasons = []
    if found.get("NeedDaemonReload") == "yes":
        reasons.append(f"systemd runs an older {unit} than the file on disk (NeedDaemonReload=yes)")
    if _running(found) and "environ" in found:
        running = found["environ"].get(variable)
        if running != fingerprint:
            # No digest in the message: it covers the secrets.
            reasons.append(f"the running server (pid {found['MainPID']}) was started from other "
                           f"files than the role renders now (its {variable} "
                           f"{'differs' if running else 'is absent'})")
    restart = bool(reasons)
    unknown = [path for path in sorted(found.get("dropins") or {})
               if os.path.basename(path) not in managed_dropins]
    reasons += [f"drop-in {path} was not written by the toolkit" for path in unknown]
    return {"drift": bool(reasons), "restart": restart, "reasons": reasons,
            "unknown_dropins": unknown}


def _flags(argv: list[str]) -> dict[str, list[tuple[str, ...]]]:
    """flag -> the values of each of its occurrences (what follows it up to the next flag)."""
    flags: dict[str, list[tuple[str, ...]]] = {}
    current: list[str] = []
    for arg in list(argv) + ["--"]:
        if arg.startswith("--"):
            if current:
                flags.setdefault(current[0], []).append(tuple(current[1:]))
            current = [arg]
        elif current:
            current.append(arg)
        else:
            flags.setdefault("", []).append((arg,))  # a word before any flag
    return flags


def _server_argv(cmdline: list[str]) -> list[str]:
    """The server's own arguments: what follows `-m <module>` (the launcher runs
    `python sglang-launch --secrets-file F -- -m sglang.launch_server ARGS`)."""
    for i, arg in enumerate(cmdline[:-1]):
        if arg == "-m":
            return cmdline[i + 2:]
    return cmdline[1:]


def _words(values: tuple[str, ...]) -> str:
    return " ".join(values) if values else "(no value)"


def sglang_running_argv_problems(state: dict[str, Any], unit: str, argv: list[str]) -> list[str]:
    """Each difference between the running server's arguments and the rendered argv, then
    its likely cause: a drop-in that sets ExecStart, a unit systemd has not reloaded, or a
    server started before the unit last changed. Empty when they agree or nothing runs
    (the health check reports that)."""
    found = _unit(state, unit)
    if not _running(found) or not found.get("cmdline"):
        return []
    running, wanted = _flags(_server_argv(found["cmdline"])), _flags(list(argv))
    differences = []
    for flag, values in wanted.items():
        if flag not in running:
            differences.append(f"{flag} missing from the running command")
        elif sorted(running[flag]) != sorted(values):
            differences.append(f"{flag} is {' / '.join(_words(v) for v in running[flag])} in the "
                               f"running command, {' / '.join(_words(v) for v in values)} rendered")
    differences += [f"{flag} {' / '.join(_words(v) for v in values)} in the running command, "
                    f"not rendered" for flag, values in running.items() if flag not in wanted]
    if not differences:
        return []
    overriding = [path for path, settings in sorted((found.get("dropins") or {}).items())
                  if "ExecStart" in settings]
    if overriding:
        cause = "; ".join(f"drop-in {path} overrides ExecStart" for path in overriding)
    elif found.get("NeedDaemonReload") == "yes":
        cause = f"systemd runs an older {unit} than the file on disk (serve.yml restarts it)"
    else:
        cause = f"the server was started from an older {unit} (serve.yml restarts it)"
    return ["; ".join(differences) + "; " + cause]


class FilterModule:
    def filters(self):
        return {
            "sglang_service_fingerprint": sglang_service_fingerprint,
            "sglang_service_drift": sglang_service_drift,
            "sglang_running_argv_problems": sglang_running_argv_problems,
        }
