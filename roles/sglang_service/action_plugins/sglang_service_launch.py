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
  resolve   variable names the action templates once each, in this order; a later one,
            and every expression, reads the earlier ones' values
  evaluate  {argument: Jinja expression}: arguments the action evaluates itself, after
            resolve. Ansible templates a variable again at every reference, and the
            deployment reads the node list about ten times (each a compiled template);
            here each named variable costs one.
Returns ansible_facts.sglang_service_launch (also with failed: a failing host keeps what
describes it).
"""
from __future__ import annotations

import re
from collections import ChainMap
from typing import Any

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

ARGUMENT_SPEC = {
    "launch": {"type": "dict", "required": True},
    "preflight": {"type": "bool", "default": False},
    "required": {"type": "bool", "default": True},
    "group": {"type": "str", "default": ""},
    "ranks": {"type": "list", "elements": "list", "default": []},
}
# Read before the others: evaluate supplies some of them.
EVALUATION_SPEC = {
    "resolve": {"type": "list", "elements": "str", "default": []},
    "evaluate": {"type": "dict", "default": {}},
}

# "{{ name }}": a value that only names another variable is read, not compiled.
BARE_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

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


class Resolver:
    """Template variables once each: resolved values shadow the task's variables."""

    def __init__(self, templar: Any, task_vars: dict[str, Any]) -> None:
        self.values: dict[str, Any] = {}
        self.variables = ChainMap(self.values, task_vars)
        self._base = templar
        self._templar: Any = None

    @property
    def templar(self) -> Any:
        # Made on first use: a task that resolves nothing needs none.
        if self._templar is None:
            self._templar = self._base.copy_with_new_env(available_variables=self.variables)
        return self._templar

    def resolve(self, name: str) -> Any:
        if name not in self.values:
            self.values[name] = self.value(self.variables[name])
        return self.values[name]

    def value(self, raw: Any) -> Any:
        # A dict of bare references (the deployment) is read field by field; anything
        # else is templated as Ansible would.
        if isinstance(raw, dict):
            return {key: self.value(item) for key, item in raw.items()}
        if isinstance(raw, str) and (match := BARE_REFERENCE.fullmatch(raw)) \
                and match.group(1) in self.variables:
            return self.resolve(match.group(1))
        return self.templar.template(raw)

    def evaluate(self, expression: str) -> Any:
        if IDENTIFIER.fullmatch(expression) and expression in self.variables:
            return self.resolve(expression)
        return self.templar.evaluate_expression(trust_as_template(expression))


def evaluated_arguments(action: ActionBase, spec: dict[str, Any],
                        task_vars: dict[str, Any]) -> tuple[Resolver, dict[str, Any]]:
    """The action's arguments, validated against spec once resolve and evaluate have
    supplied theirs; and the resolver, whose variables hold the resolved values."""
    given = {key: value for key, value in action._task.args.items() if key not in EVALUATION_SPEC}
    action._task.args = {key: value for key, value in action._task.args.items()
                         if key in EVALUATION_SPEC}
    _, evaluation = action.validate_argument_spec(argument_spec=EVALUATION_SPEC)
    resolver = Resolver(action._templar, task_vars)
    for name in evaluation["resolve"]:
        try:
            resolver.resolve(name)
        except AnsibleError:
            pass  # left to the argument that reads it, whose error names the argument
    for key, expression in evaluation["evaluate"].items():
        try:
            given[key] = resolver.evaluate(expression)
        except AnsibleError as error:
            # Worded as Ansible words an argument it cannot template.
            cause = AnsibleError(f"Error while resolving value for {key!r}.")
            cause.__cause__ = error
            raise AnsibleError(f"Finalization of task args for {action._task.action!r} "
                               "failed.") from cause
    action._task.args = given
    _, args = action.validate_argument_spec(argument_spec=spec)
    return resolver, args


class ActionModule(ActionBase):
    # Reads only the task's arguments: the host is never contacted.
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        _, args = evaluated_arguments(self, ARGUMENT_SPEC, task_vars or {})
        result["ansible_facts"] = {"sglang_service_launch": args["launch"]}
        problem = preflight_problem(args) if args["preflight"] else None
        if problem:
            result.update(failed=True, msg=problem)
        return result
