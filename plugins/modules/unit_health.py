#!/usr/bin/python
"""Ansible module: one look at a starting service, its health URL and its systemd unit."""
from __future__ import annotations

DOCUMENTATION = r"""
module: unit_health
short_description: Ask a health URL and the unit behind it, and judge the start
description:
  - One poll of a health gate (roles/toolkit_common/tasks/service_health.yml repeats it);
    the URL's answer and the unit's ActiveState, SubState, Result and NRestarts.
  - C(verdict) is C(healthy) when the URL answers 200 (and C(field) reaches C(minimum)),
    C(failed) as soon as the unit has failed, stopped, waits for an automatic restart, or
    was restarted by systemd more often than C(restarts) (it crashed after the start), and
    C(starting) otherwise. A server that crashes is then reported within one poll, not at
    the gate's deadline.
  - Without C(url) only the unit is read (the gate reads its restart count first).
  - Reads only; a missing unit reads as failed.
options:
  unit: {description: The systemd unit., type: str, required: true}
  url: {description: The health URL; empty reads the unit alone., type: str, default: ""}
  field: {description: A field of the URL's JSON answer that must reach C(minimum)., type: str, default: ""}
  minimum: {description: The field's minimum., type: int, default: 0}
  restarts:
    description: The unit's NRestarts when the gate began; more means systemd restarted it. -1 ignores the count.
    type: int
    default: -1
  timeout: {description: Seconds the URL may take to answer., type: float, default: 5}
"""

EXAMPLES = r"""
- name: Read the restart count before waiting
  kimi_k2.sglang.unit_health:
    unit: sglang.service
  register: before

- name: Wait until healthy, or failed
  kimi_k2.sglang.unit_health:
    unit: sglang.service
    url: http://127.0.0.1:30000/health
    restarts: "{{ before.unit_state.NRestarts }}"
  register: health
  until: health.verdict != 'starting'
  retries: 360
  delay: 10
"""

RETURN = r"""
verdict: {description: "healthy, starting or failed.", type: str, returned: always}
reason: {description: Why the unit counts as failed; empty otherwise., type: str, returned: always}
unit_state:
  description: "ActiveState, SubState, Result, NRestarts (an int), ExecMainCode, ExecMainStatus."
  type: dict
  returned: always
status: {description: The URL's HTTP status; -1 when it did not answer., type: int, returned: when url is set}
json: {description: The URL's JSON answer, when it was JSON., type: raw, returned: when url is set}
msg: {description: Why the URL did not answer 200., type: str, returned: when url is set}
"""

import json
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils import systemd_show

PROPERTIES = ("ActiveState", "SubState", "Result", "NRestarts", "ExecMainCode", "ExecMainStatus")
# systemd is mid-way through a job (a restart passes through these): look again.
TRANSIENT = ("inactive", "failed", "deactivating")


def parse_show(text: str) -> dict:
    state = systemd_show.parse_show(text, ["unit"], PROPERTIES)["unit"]
    try:
        state["NRestarts"] = int(state["NRestarts"])
    except ValueError:
        state["NRestarts"] = 0
    return state


def judge_unit(state: dict, restarts: int) -> str:
    """Why the unit counts as failed, or '' while it runs or starts."""
    active, sub = state.get("ActiveState", ""), state.get("SubState", "")
    where = f"{active} ({sub}), result {state.get('Result') or '?'}"
    if state.get("ExecMainCode") not in (None, "", "0"):
        # ExecMainCode is a CLD_* code: 1 exited (status = exit code), 2 killed (signal).
        kind = "exit code" if state.get("ExecMainCode") == "1" else "signal"
        where += f", last process ended with {kind} {state.get('ExecMainStatus') or '?'}"
    if active == "failed":
        return f"the unit failed: {where}"
    if active == "inactive":
        return f"the unit stopped: {where}"
    if sub == "auto-restart":
        return f"the server exited and systemd waits to restart it: {where}"
    if restarts >= 0 and int(state.get("NRestarts") or 0) > restarts:
        count = int(state["NRestarts"]) - restarts
        return f"systemd restarted the unit {count} time(s) since the start (it crashed): {where}"
    return ""


def ask(url: str, timeout: float) -> dict:
    out: dict = {"status": -1, "json": None, "msg": ""}
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the caller's URL
            out["status"], body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        out["status"], body = err.code, err.read() if err.fp else b""
        out["msg"] = f"HTTP Error {err.code}: {err.reason}"
    except (OSError, ValueError) as err:  # refused, reset, timed out
        out["msg"] = f"Status code was -1 and not [200]: Request failed: {err}"
        return out
    try:
        out["json"] = json.loads(body or b"null")
    except ValueError:
        pass
    return out


def healthy(answer: dict, field: str, minimum: int) -> bool:
    if answer["status"] != 200:
        return False
    if not field:
        return True
    value = (answer["json"] if isinstance(answer["json"], dict) else {}).get(field, 0)
    try:
        return int(value) >= minimum
    except (TypeError, ValueError):
        return False


def main() -> None:
    module = AnsibleModule(
        argument_spec={"unit": {"type": "str", "required": True},
                       "url": {"type": "str", "default": ""},
                       "field": {"type": "str", "default": ""},
                       "minimum": {"type": "int", "default": 0},
                       "restarts": {"type": "int", "default": -1},
                       "timeout": {"type": "float", "default": 5}},
        supports_check_mode=True,
    )
    p = module.params

    def read_unit() -> dict:
        rc, out, err = module.run_command(
            ["systemctl", "show", "--property", ",".join(PROPERTIES), "--", p["unit"]])
        if rc != 0:
            module.fail_json(msg=f"systemctl show {p['unit']} failed: {err.strip()}")
        return parse_show(out)

    result: dict = {"changed": False}
    if p["url"]:
        answer = ask(p["url"], p["timeout"])
        result.update(answer)
        if healthy(answer, p["field"], p["minimum"]):
            module.exit_json(verdict="healthy", reason="", unit_state=read_unit(), **result)
    state = read_unit()
    reason = judge_unit(state, p["restarts"]) if p["url"] else ""
    if reason and state["ActiveState"] in TRANSIENT and state["SubState"] != "auto-restart":
        # A restart passes through inactive: a state that lasts a second is no failure.
        time.sleep(1)
        state = read_unit()
        reason = judge_unit(state, p["restarts"])
    module.exit_json(verdict="failed" if reason else "starting", reason=reason,
                     unit_state=state, **result)


if __name__ == "__main__":
    main()
