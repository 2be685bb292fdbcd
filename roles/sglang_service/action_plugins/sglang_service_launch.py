"""Action sglang_service_launch: publish this host's launch and, as a preflight, check it.

The launch arrives evaluated (the sglang_launch filter, in the task's arguments) and is
published as the host fact sglang_service_launch. The preflight's checks run in the same
task: a set_fact and an assert per check would cost every host a task each, and on a
fleet the controller's cost per host and task is what a plan or a preflight takes.

Arguments:
  launch    {problems, argv, resolved}: what the sglang_launch filter returns
  preflight when true, fail on the first check that does not pass, in this order:
            required (false: the variant or the API key is not set), the launch's
            problems, then ranks that disagree
  required  whether sglang_service_variant and sglang_service_api_key are set
  group     the deployment group (named in the message about ranks)
  ranks     [host, SGLang version, model path] per rank of a multi-node server; empty
            for a single-node one
Returns ansible_facts.sglang_service_launch (also with failed: a failing host keeps what
describes it).
"""
from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = {
    "launch": {"type": "dict", "required": True},
    "preflight": {"type": "bool", "default": False},
    "required": {"type": "bool", "default": True},
    "group": {"type": "str", "default": ""},
    "ranks": {"type": "list", "elements": "list", "default": []},
}

REQUIRED_MSG = ("sglang_service_variant (instruct, instruct-0905 or thinking) and "
                "sglang_service_api_key (a vault secret) must be set for every SGLang host.")


def rank_problem(group: str, ranks: list[list[Any]]) -> str | None:
    """A message when the ranks of one server differ in SGLang version or model path."""
    if len({str(version) for _, version, _ in ranks}) <= 1 and \
            len({str(path) for _, _, path in ranks}) <= 1:
        return None
    found = {host: (version, path) for host, version, path in ranks}
    return (f"Every rank of {group} must set the same sglang_service_sglang_version and "
            f"sglang_service_model_path; they are {found}.")


def preflight_problem(args: dict[str, Any]) -> str | None:
    """The first reason this host must not be changed, or None."""
    if not args["required"]:
        return REQUIRED_MSG
    problems = args["launch"].get("problems") or []
    if problems:
        return " | ".join(problems)
    return rank_problem(args["group"], args["ranks"])


class ActionModule(ActionBase):
    # Reads only the task's arguments: the host is never contacted.
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        result["ansible_facts"] = {"sglang_service_launch": args["launch"]}
        problem = preflight_problem(args) if args["preflight"] else None
        if problem:
            result.update(failed=True, msg=problem)
        return result
