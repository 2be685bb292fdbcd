"""Action sglang_service_launch: publish this host's launch and, as a preflight, check it.

The launch arrives evaluated (the sglang_launch filter, in the task's arguments) and is
published as the host fact sglang_service_launch. The preflight's checks run in the same
task: a set_fact and an assert per check would cost every host a task each, and on a
fleet the controller's cost per host and task is what a plan or a preflight takes.

Arguments:
  launch    {problems, argv, resolved}: what the sglang_launch filter returns
  preflight when true, fail on the first check that does not pass, in this order:
            required (false: the variant or the API key is not set), settings out of
            range, the launch's problems, then ranks that disagree
  required  whether sglang_service_variant and sglang_service_api_key are set
  settings  messages about settings out of range (the setting_problems filter), checked
            after required and before the launch's problems
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

This module also holds what both actions share: resolve and evaluate, and the compiled
template cache (CompiledTemplates, install_template_cache).
"""
from __future__ import annotations

import contextvars
import hashlib
import marshal
import os
import re
import tempfile
from collections import ChainMap
from types import CodeType
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template

ARGUMENT_SPEC = {
    "launch": {"type": "dict", "required": True},
    "preflight": {"type": "bool", "default": False},
    "required": {"type": "bool", "default": True},
    "settings": {"type": "list", "elements": "str", "default": []},
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
    if args["settings"]:
        return " | ".join(args["settings"])
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


class CompiledTemplates:
    """Jinja's compiled code for each template text, in this process and in a directory
    that the run's other processes share.

    Ansible compiles a template (parse, generate Python, compile it) each time it renders
    one, and each host's task runs in a new process forked from the controller, so the
    same ~45 template texts (the role's defaults, its templates, the task arguments) were
    compiled again for every host: about half the workers' CPU in a plan of 128 hosts
    (cProfile). A code object depends only on the text, the environment's syntax settings
    and Ansible's compile context (the key), and on which filters and tests exist and
    whether they take the context, fixed for a run (Jinja's own bytecode cache stores the
    same thing). The first process to compile a text writes the code to the run's local
    temporary directory, which ansible-playbook creates before forking and deletes on
    exit, as it does its module cache; the later ones read it (marshal, well under 1 ms).
    A compile error is not cached: Ansible reports it as before.
    """

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.memory: dict[tuple[Any, ...], CodeType] = {}

    def _path(self, key: tuple[Any, ...]) -> str | None:
        if self.directory is None:
            return None
        return os.path.join(self.directory, hashlib.sha256(repr(key).encode()).hexdigest())

    def get(self, key: tuple[Any, ...]) -> CodeType | None:
        if key in self.memory:
            return self.memory[key]
        path = self._path(key)
        try:
            with open(path, "rb") as handle:  # type: ignore[arg-type]
                code = marshal.load(handle)
        except (TypeError, OSError, EOFError, ValueError):
            return None  # not cached yet (or no directory): compile
        if not isinstance(code, CodeType):
            return None
        self.memory[key] = code
        return code

    def put(self, key: tuple[Any, ...], code: CodeType) -> None:
        self.memory[key] = code
        path = self._path(key)
        if path is None:
            return
        try:
            os.makedirs(self.directory, exist_ok=True)  # type: ignore[arg-type]
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".")
            with os.fdopen(fd, "wb") as handle:
                marshal.dump(code, handle)
            os.replace(temp, path)  # whole or absent: a reader never sees half
        except OSError:
            pass  # the cache only saves time


# The key of the expression whose code Jinja's compile_expression is about to compile.
_PENDING_EXPRESSION: contextvars.ContextVar[tuple[Any, ...] | None] = \
    contextvars.ContextVar("sglang_service_pending_expression", default=None)


def _compile_key(env: Any, kind: str, source: str, *extra: Any) -> tuple[Any, ...] | None:
    """What Jinja's code for source depends on, or None when it must not be cached."""
    # pylint: disable-next=import-outside-toplevel
    from ansible._internal._templating import _jinja_bits
    if env._debuggable_template_source:  # the code then names a per-compile source file
        return None
    compiling = _jinja_bits._TemplateCompileContext.current(optional=True)
    syntax = tuple(getattr(env, name) for name in _jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES)
    return (kind, str(source), syntax, env.optimized, env.autoescape, env.is_async,
            compiling.escape_backslashes if compiling else None, *extra)


def install_template_cache(directory: str | None = None) -> CompiledTemplates:
    """Make this process's Ansible Jinja environments reuse compiled code (once per
    process; forked processes inherit it). directory defaults to a folder of the run's
    local temporary directory."""
    # pylint: disable-next=import-outside-toplevel
    from ansible._internal._templating import _jinja_bits
    env_class = _jinja_bits.AnsibleEnvironment
    installed = env_class.__dict__.get("_sglang_service_compiled")
    if installed is not None:
        return installed
    if directory is None:
        directory = os.path.join(C.DEFAULT_LOCAL_TMP, "sglang_service_jinja_code")
    cache = CompiledTemplates(directory)
    jinja_compile = env_class.compile
    jinja_compile_expression = env_class.compile_expression

    def compile(self: Any, source: Any, name: str | None = None,  # pylint: disable=redefined-builtin
                filename: str | None = None, raw: bool = False, defer_init: bool = False) -> Any:
        if raw:
            key = None
        elif isinstance(source, str):
            key = _compile_key(self, "template", source, name, filename, defer_init)
        else:  # the node compile_expression built, for the expression it names
            key = _PENDING_EXPRESSION.get()
            _PENDING_EXPRESSION.set(None)
        code = cache.get(key) if key is not None else None
        if code is None:
            code = jinja_compile(self, source, name, filename, raw, defer_init)
            if key is not None:
                cache.put(key, code)
        return code

    def compile_expression(self: Any, source: str, undefined_to_none: bool = True) -> Any:
        key = _compile_key(self, "expression", source, undefined_to_none)
        code = cache.get(key) if key is not None else None
        if code is not None:  # what Jinja's compile_expression returns, minus the parsing
            template = self.template_class.from_code(self, code, self.make_globals(None), None)
            return _jinja_bits.TemplateExpression(template, undefined_to_none)
        token = _PENDING_EXPRESSION.set(key)
        try:
            return jinja_compile_expression(self, source, undefined_to_none)
        finally:
            _PENDING_EXPRESSION.reset(token)

    env_class.compile = compile
    env_class.compile_expression = compile_expression
    env_class._sglang_service_compiled = cache
    _share_plugin_lookups()
    _warm_builtin_lookups()
    return cache


def _share_plugin_lookups() -> None:
    """Look each filter and test name up once per process, not once per environment.

    Every Templar copy makes a Jinja environment with an empty table of the filters and
    tests it has looked up; a name the plugin loader does not know (Jinja's own: map,
    select, first, length, join, ...) is searched for on disk, through every filter file,
    each time before Jinja's builtin is used: ~80 lookups per host, about a sixth of
    the workers' time once templates were cached (cProfile). The function found does not depend on the environment (it only wraps the
    plugin); the table is dropped when the loader's own cache is (a plugin directory
    added), so the answer is the loader's.
    """
    # pylint: disable-next=import-outside-toplevel
    from ansible._internal._templating._jinja_plugins import JinjaPluginIntercept
    lookup = JinjaPluginIntercept.__getitem__
    shared: dict[int, tuple[Any, dict[str, Any]]] = {}

    def __getitem__(self: Any, key: str) -> Any:
        if plugin_func := self._wrapped_funcs.get(key):  # set on this environment only
            return plugin_func
        loader = self._plugin_loader
        generation, found = shared.get(id(loader), (None, {}))
        if generation is not loader._cached_non_collection_wrappers:
            generation, found = loader._cached_non_collection_wrappers, {}
            shared[id(loader)] = (generation, found)
        if (plugin_func := found.get(key)) is None:
            plugin_func = found[key] = lookup(self, key)  # raises for an unknown name
        else:
            self._wrapped_funcs[key] = plugin_func
        return plugin_func

    JinjaPluginIntercept.__getitem__ = __getitem__


def _warm_builtin_lookups() -> None:
    """Look up, once, the names Jinja defines itself that no plugin file provides: the
    slow lookups (2-3 ms each). Done where the cache is installed: in the controller,
    when its strategy loads the action, so every host's process inherits the answers
    instead of searching again (~0.1 s once)."""
    # pylint: disable-next=import-outside-toplevel
    from ansible._internal._templating._jinja_bits import AnsibleEnvironment
    env = AnsibleEnvironment()
    for table in (env.filters, env.tests):
        known = table._plugin_loader._cached_non_collection_wrappers
        for name in table._jinja_builtins:
            if name not in known:
                try:
                    table[name]  # pylint: disable=pointless-statement
                except AnsibleError:
                    pass  # left to the template that uses it


# On import: the controller imports this action (its strategy reads the class) before it
# forks the host processes of the task, so they inherit the cache and the lookups; the
# templating of the task's own arguments uses them too. The cache reaches into ansible-core
# 2.19's private templating (requirements.txt pins ansible-core): another
# ansible-core that lacks those names runs as it is, only without the cache.
try:
    install_template_cache()
except (ImportError, AttributeError):
    pass


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
