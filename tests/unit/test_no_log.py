"""`no_log` only where a secret passes (issue 14, fault 9).

no_log hides a task's whole result: its error message, a preflight's reason, an
unreachable host's SSH error all read "censored". So a task of a role or playbook may set
it only when a secret can show in what it displays: its module arguments (for assert,
fail and debug only the message: their conditions are never shown with values), the
template or file it copies, or an output listed below with the reason."""
import re
from pathlib import Path

import yaml

from conftest import ROOT

# Tasks whose *output* may hold a secret though no secret is among their arguments.
OUTPUT_MAY_HOLD_A_SECRET = {
    ("roles/toolkit_common/tasks/service_health.yml",
     "service_health | Read the journal of {{ toolkit_common_service_unit }}"):
        "journal lines written before the launcher masked the key may hold it",
}
NOT_SHOWN = {"name", "when", "no_log", "tags", "register", "changed_when", "failed_when",
             "notify", "listen", "loop_control", "become", "become_user", "check_mode",
             "delegate_to", "run_once", "until", "retries", "delay", "vars", "environment"}
# Shown on failure: their message, never their conditions' values.
MESSAGE_ONLY = {"assert": ("fail_msg", "success_msg", "msg"), "fail": ("msg",),
                "debug": ("msg", "var")}
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
CONTAINERS = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")


class _AnyTagLoader(yaml.SafeLoader):
    """Reads !vault, !unsafe and the like as plain values."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def secret_names() -> set[str]:
    """Every role variable its argument spec marks no_log, and the vault_ names."""
    names = set()
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in (yaml.safe_load(spec.read_text())["argument_specs"] or {}).values():
            names |= {name for name, option in (entry.get("options") or {}).items()
                      if option.get("no_log")}
    return names | {"vault_" + name for name in names}


def tasks(data):
    if isinstance(data, list):
        for item in data:
            yield from tasks(item)
    elif isinstance(data, dict):
        if "name" in data and not any(key in data for key in CONTAINERS + ("hosts",
                                                                           "import_playbook")):
            yield data
        for key in CONTAINERS:
            yield from tasks(data.get(key))


def task_files():
    yield from sorted((ROOT / "roles").glob("*/tasks/*.yml"))
    yield from sorted((ROOT / "roles").glob("*/handlers/*.yml"))
    yield from sorted((ROOT / "playbooks").glob("*.yml"))


def shown_text(path: Path, task: dict) -> str:
    """What Ansible displays of the task: its arguments, and what it copies."""
    module = next((key for key in task if key not in NOT_SHOWN and key not in ("loop",)), "")
    args = task.get(module)
    short = module.rsplit(".", 1)[-1]
    if short in MESSAGE_ONLY and isinstance(args, dict):
        args = {key: args.get(key) for key in MESSAGE_ONLY[short]}
    text = yaml.safe_dump([args, task.get("loop")])
    if short in ("template", "copy") and isinstance(args, dict) and args.get("src") \
            and not args.get("remote_src"):
        role = path.parents[1]
        for folder in ("templates", "files"):
            source = role / folder / str(args["src"])
            if source.is_file():
                text += source.read_text()
    return text


def no_log_tasks():
    for path in task_files():
        for task in tasks(yaml.load(path.read_text(), Loader=_AnyTagLoader)):
            if task.get("no_log") is True:
                yield path, task


def test_no_log_only_where_a_secret_can_show():
    secrets = secret_names()
    assert {"sglang_service_api_key", "sglang_router_api_key",
            "model_weights_hf_token"} <= secrets
    found = list(no_log_tasks())
    assert found  # the secrets files' tasks at least
    hidden_for_nothing = []
    for path, task in found:
        key = (str(path.relative_to(ROOT)), task["name"])
        if key in OUTPUT_MAY_HOLD_A_SECRET:
            continue
        # A secret passes where a template reads it, not where a message names it.
        expressions = " ".join(JINJA.findall(shown_text(path, task)))
        if not any(re.search(rf"\b{name}\b", expressions) for name in secrets):
            hidden_for_nothing.append(key)
    assert not hidden_for_nothing, (
        "no_log on tasks that show no secret (their errors would read 'censored'): "
        f"{hidden_for_nothing}")


def test_every_listed_exception_is_still_a_no_log_task():
    present = {(str(path.relative_to(ROOT)), task["name"]) for path, task in no_log_tasks()}
    assert set(OUTPUT_MAY_HOLD_A_SECRET) <= present
