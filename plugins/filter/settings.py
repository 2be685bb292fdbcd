"""Range rules for every numeric, port and address setting of every role.

meta/argument_specs.yml checks a setting's kind (Ansible refuses a string where an int
belongs) but not its range: a memory fraction of 1.5, a negative request limit, an API
port equal to the rendezvous port or an address that is none would reach a host and fail
there, late and far from the cause. RULES below names each setting with its rule, in one
place; each role's preflight (on the controller, before any host changes) passes its
settings through `setting_problems`, which returns one message per bad value, naming the
variable and what to set. tests/unit/test_settings.py walks every role's argument spec:
a new int, float, port, host, address or URL setting without a rule here fails it.

    names:    "{{ 'sglang_router' | kimi_k2.sglang.setting_names }}"
    problems: "{{ dict(names | zip(q('ansible.builtin.vars', *names)))
                  | kimi_k2.sglang.setting_problems }}"

Pure functions, unit-tested.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError


class Rule(NamedTuple):
    kind: str                 # count, fraction, port, address, url
    low: float = 1            # count: the smallest value allowed
    high: float | None = None  # count: the largest, if any
    nullable: bool = False    # null means "not set" (SGLang's or the profile's default)
    special: tuple = ()       # values allowed besides the range (SGLang's -1 = off)
    fix: str = ""             # what the value is for, said in the message


def _count(low: float = 1, high: float | None = None, **more: Any) -> Rule:
    return Rule("count", low, high, **more)


PORT = Rule("port")
ADDRESS = Rule("address")
URL = Rule("url")

RULES: dict[str, Rule] = {
    # gpu_preflight
    "gpu_preflight_gpu_count": _count(fix="GPUs every host must show"),
    "gpu_preflight_memory_mib": _count(fix="MiB each GPU must report"),
    "gpu_preflight_free_bytes_required": _count(0, fix="bytes free for the model cache"),
    # model_weights
    "model_weights_hub_max_workers": _count(fix="parallel Hub downloads"),
    "model_weights_pip_index_url": URL,
    "model_weights_cluster_address": ADDRESS,
    "model_weights_peer_port": PORT,
    "model_weights_peer_streams": _count(fix="rsync streams per copy"),
    "model_weights_peer_fanout": _count(fix="copies a host sends"),
    "model_weights_follow_timeout": _count(fix="seconds a follower waits on its source"),
    "model_weights_free_space_margin_gib": _count(0, fix="GiB kept free"),
    "model_weights_progress_interval": _count(fix="seconds between progress lines"),
    "model_weights_timeout": _count(fix="seconds a staging may take"),
    # nvidia_driver
    "nvidia_driver_repo_url": URL,
    "nvidia_driver_repo_key_url": URL,
    "nvidia_driver_reboot_timeout": _count(fix="seconds a reboot may take"),
    # sglang
    "sglang_pip_index_url": URL,
    # sglang_benchmark
    "sglang_benchmark_sweep_prompts_per_concurrency": _count(fix="prompts per unit of concurrency"),
    "sglang_benchmark_timeout": _count(fix="seconds a run may take"),
    "sglang_benchmark_progress_interval": _count(fix="seconds between progress lines"),
    "sglang_benchmark_sharegpt_url": URL,
    # sglang_rollout
    "sglang_rollout_min_serving_groups": _count(0, fix="groups that keep serving"),
    "sglang_rollout_drain_timeout": _count(0, fix="seconds to wait for in-flight requests"),
    "sglang_rollout_gsm8k_questions": _count(1, 1319, fix="GSM8K test questions (1319 in all)"),
    # sglang_router
    "sglang_router_pip_index_url": URL,
    "sglang_router_host": ADDRESS,
    "sglang_router_port": PORT,
    "sglang_router_address": ADDRESS,
    "sglang_router_request_timeout": _count(fix="seconds a request may take"),
    "sglang_router_shutdown_grace_period": _count(0, fix="seconds in-flight requests get at stop"),
    "sglang_router_health_check_interval": _count(fix="seconds between worker checks"),
    "sglang_router_health_check_timeout": _count(fix="seconds a worker check may take"),
    "sglang_router_health_failure_threshold": _count(fix="failed checks before a worker is out"),
    "sglang_router_health_success_threshold": _count(fix="passed checks before it is back"),
    "sglang_router_worker_startup_timeout": _count(fix="seconds a worker may take to start"),
    "sglang_router_worker_startup_check_interval": _count(fix="seconds between start checks"),
    "sglang_router_prometheus_host": ADDRESS,
    "sglang_router_prometheus_port": PORT,
    "sglang_router_ready_timeout": _count(fix="seconds until every worker is ready"),
    "sglang_router_ready_interval": _count(fix="seconds between readiness polls"),
    "sglang_router_restart_burst": _count(fix="starts allowed per interval"),
    "sglang_router_restart_interval": _count(fix="seconds of the start-limit window"),
    # sglang_service
    "sglang_service_tp_size": _count(nullable=True, fix="GPUs per server (null: the profile's)"),
    "sglang_service_dp_size": _count(nullable=True, fix="data-parallel ranks (null: the profile's)"),
    "sglang_service_ep_size": _count(nullable=True, fix="expert-parallel ranks (null: the profile's)"),
    "sglang_service_cluster_address": ADDRESS,
    "sglang_service_dist_init_port": PORT,
    "sglang_service_group_watchdog_interval": _count(fix="seconds between group probes"),
    "sglang_service_group_watchdog_failures": _count(fix="failed probes before a restart"),
    "sglang_service_gpus_per_node": _count(1, 16, fix="GPUs per host"),
    "sglang_service_context_length": _count(nullable=True, fix="tokens (null: the model's)"),
    "sglang_service_mem_fraction_static": Rule("fraction", nullable=True),
    # SGLang 0.5.6.post1: -1 turns chunked prefill off.
    "sglang_service_chunked_prefill_size": _count(nullable=True, special=(-1,),
                                                  fix="tokens per prefill chunk, or -1 for none"),
    "sglang_service_max_running_requests": _count(nullable=True, fix="requests decoded at once"),
    "sglang_service_host": ADDRESS,
    "sglang_service_port": PORT,
    "sglang_service_start_timeout": _count(fix="seconds a (re)start may take"),
    "sglang_service_health_interval": _count(fix="seconds between health polls"),
    "sglang_service_stop_timeout": _count(fix="seconds SGLang may drain at stop"),
    "sglang_service_restart_delay": _count(0, fix="seconds from a crash to the restart"),
    "sglang_service_restart_burst": _count(fix="starts allowed per interval"),
    "sglang_service_restart_interval": _count(fix="seconds of the start-limit window"),
    "sglang_service_watchdog_timeout": _count(30, 86400, nullable=True,
                                              fix="seconds a forward batch may take (null: SGLang's)"),
    "sglang_service_dist_timeout": _count(60, 86400, nullable=True,
                                          fix="seconds torch.distributed waits (null: torch's)"),
    "sglang_service_multithread_load_threads": _count(1, 64, fix="loader threads per rank"),
    "sglang_service_generation_probe_timeout": _count(2, 600, fix="seconds a generation probe may take"),
    "sglang_service_comm_check_timeout": _count(10, 3600, fix="seconds the communication check may take"),
    "sglang_service_comm_check_min_busbw_gbps": _count(0, fix="GB/s of NCCL bus bandwidth (0: no threshold)"),
    # Issue 17 (plugins/module_utils/sglang_disaggregation.py checks the bootstrap port's
    # collisions on prefill servers only: a monolithic server does not bind it).
    "sglang_service_disaggregation_bootstrap_port": _count(1, 65535, nullable=True,
                                                           fix="a prefill's bootstrap TCP port"),
    "sglang_service_ep_num_redundant_experts": _count(0, 1024, fix="redundant experts"),
    # DeepEP's low-latency dispatch needs <= 1024 (0.5.6.post1 token_dispatcher/deepep.py:320-325).
    "sglang_service_deepep_max_dispatch_tokens_per_rank": _count(
        1, 1024, nullable=True, fix="DeepEP dispatch tokens per rank (null: SGLang's 128)"),
    # sglang_monitoring (its objectives: plugins/filter/sglang_monitoring.py)
    "sglang_monitoring_host": Rule("address", nullable=True),  # an inventory host, or empty
    "sglang_monitoring_grafana_host": Rule("address", nullable=True),
    "sglang_monitoring_dcgm_exporter_port": PORT,
    "sglang_monitoring_node_exporter_port": _count(0, 65535, fix="node exporter port, 0 for none"),
    "sglang_monitoring_rate_window": _count(fix="seconds behind rates and p95s"),
    "sglang_monitoring_down_for": _count(0, fix="seconds down before an alert"),
    "sglang_monitoring_alert_for": _count(0, fix="seconds a condition lasts before an alert"),
    "sglang_monitoring_latency_for": _count(0, fix="seconds above an objective before an alert"),
    "sglang_monitoring_queue_threshold": _count(0, fix="queued requests"),
    "sglang_monitoring_token_usage_ratio": Rule("fraction", fix="of the KV cache's tokens"),
    "sglang_monitoring_gpu_temperature_celsius": _count(1, 150, fix="degrees Celsius"),
    "sglang_monitoring_scrape_interval": _count(fix="seconds between scrapes"),
    "sglang_monitoring_evaluation_interval": _count(fix="seconds between rule evaluations"),
    "sglang_monitoring_retention_days": _count(fix="days of samples kept"),
    "sglang_monitoring_retention_size_gib": _count(0, fix="GiB of samples kept, 0 for no limit"),
    "sglang_monitoring_listen_address": ADDRESS,
    "sglang_monitoring_prometheus_port": PORT,
    "sglang_monitoring_alertmanager_port": PORT,
    "sglang_monitoring_ready_timeout": _count(fix="seconds Prometheus may take to be ready"),
    # sglang_verify
    "sglang_verify_request_timeout": _count(fix="seconds a smoke request may take"),
    "sglang_verify_max_tokens": _count(fix="tokens a smoke answer may use"),
    "sglang_verify_gsm8k_questions": _count(1, 1319, fix="GSM8K test questions (1319 in all)"),
    "sglang_verify_gsm8k_shots": _count(0, 1318, fix="few-shot examples"),
    "sglang_verify_gsm8k_concurrency": _count(fix="requests in flight"),
    "sglang_verify_gsm8k_chat_max_tokens": _count(fix="tokens a chat answer may use"),
    "sglang_verify_gsm8k_slice": _count(fix="questions per progress slice"),
    "sglang_verify_gsm8k_request_timeout": _count(fix="seconds a question may take"),
    "sglang_verify_gsm8k_retries": _count(0, fix="retries on transport errors"),
    "sglang_verify_gsm8k_deadline": _count(fix="seconds the gate may take"),
    "sglang_verify_gsm8k_dataset_url": URL,
    # toolkit_common (internal: its callers pass it settings they checked)
    "toolkit_common_dataset_url": URL,
    "toolkit_common_venv_index_url": URL,
    "toolkit_common_service_health_url": URL,
    "toolkit_common_service_health_min": _count(0, fix="the JSON field's minimum"),
    "toolkit_common_service_health_timeout": _count(fix="seconds the health gate waits"),
    "toolkit_common_service_health_interval": _count(fix="seconds between health polls"),
    "toolkit_common_service_health_probe_timeout": _count(fix="seconds one health poll may take"),
    "toolkit_common_service_journal_lines": _count(fix="journal lines a failure shows"),
}

# With dp-attention, rank 0 of a server also binds dist_init_port + 1 .. + 5 (SGLang
# 0.5.6.post1): no other port of the host may fall there.
RENDEZVOUS = "sglang_service_dist_init_port"
RENDEZVOUS_SPAN = 5

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _is_address(value: str) -> bool:
    """An IPv4 or IPv6 literal, or a DNS name (RFC 1123 labels)."""
    try:
        ipaddress.ip_address(value.strip("[]"))
        return True
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises on a port that is no number
    except ValueError:
        return False
    if parts.scheme == "file":
        return bool(parts.path)
    return parts.scheme in ("http", "https") and bool(parts.hostname) \
        and _is_address(parts.hostname)


def _number(value: Any, kind: type) -> Any:
    """value as kind, or None; booleans are not numbers."""
    if isinstance(value, bool):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return None
    return number if kind is float or str(value).strip().lstrip("+-").isdigit() else None


def rule_problem(name: str, value: Any, rule: Rule) -> str | None:
    """The message for one setting's value, or None when it is in range."""
    if value is None or value == "":
        if rule.nullable or rule.kind == "url":
            return None
        return f"{name} is not set: set it ({_expect(rule)})"
    if rule.kind == "count":
        number = _number(value, int)
        if number is not None and (number in rule.special or (
                number >= rule.low and (rule.high is None or number <= rule.high))):
            return None
    elif rule.kind == "fraction":
        number = _number(value, float)
        if number is not None and 0 < number < 1:
            return None
    elif rule.kind == "port":
        number = _number(value, int)
        if number is not None and 1 <= number <= 65535:
            return None
    elif rule.kind == "address":
        if isinstance(value, str) and _is_address(value):
            return None
    elif rule.kind == "url":
        if isinstance(value, str) and _is_url(value):
            return None
    else:
        raise AnsibleFilterError(f"unknown rule kind {rule.kind!r} for {name}")
    return f"{name} is {value!r}: set it to {_expect(rule)}"


def _expect(rule: Rule) -> str:
    if rule.kind == "count":
        span = (f"a whole number >= {rule.low:g}" if rule.high is None
                else f"a whole number from {rule.low:g} to {rule.high:g}")
        span += "".join(f" or {s}" for s in rule.special)
        span += " or null" if rule.nullable else ""
        return f"{span} ({rule.fix})" if rule.fix else span
    if rule.kind == "fraction" and rule.fix:
        return f"a fraction strictly between 0 and 1 ({rule.fix})"
    return {
        "fraction": "a fraction strictly between 0 and 1 (of each GPU's memory), or null",
        "port": "a TCP port from 1 to 65535",
        "address": "an IPv4 or IPv6 address or a DNS name",
        "url": "an http(s):// or file:// URL, or empty for none",
    }[rule.kind]


# The roles whose settings have rules: a name belongs to the longest one it starts with
# (sglang_router_port is sglang_router's, not sglang's).
ROLES = ("gpu_preflight", "model_weights", "nvidia_driver", "sglang",
         "sglang_benchmark", "sglang_rollout", "sglang_router", "sglang_service",
         "sglang_verify", "toolkit_common", "sglang_monitoring")


def owner(name: str) -> str | None:
    roles = [role for role in ROLES if name.startswith(role + "_")]
    return max(roles, key=len) if roles else None


def setting_names(role: str) -> list[str]:
    """The settings of a role that RULES has a rule for."""
    if role not in ROLES:
        raise AnsibleFilterError(f"setting_names: unknown role {role!r}; known: {ROLES}")
    return sorted(name for name in RULES if owner(name) == role)


def port_problems(settings: Mapping[str, Any]) -> list[str]:
    """Two settings of one host on one port, or a port in the rendezvous' span."""
    ports: dict[int, list[str]] = {}
    for name, value in settings.items():
        rule = RULES.get(name)
        number = _number(value, int) if rule is not None and rule.kind == "port" else None
        if number is not None:
            ports.setdefault(number, []).append(name)
    out = [f"{' and '.join(sorted(names))} share port {port} on this host: give each its "
           "own port" for port, names in sorted(ports.items()) if len(names) > 1]
    rendezvous = _number(settings.get(RENDEZVOUS), int)
    if rendezvous is not None:
        for port, names in sorted(ports.items()):
            if rendezvous < port <= rendezvous + RENDEZVOUS_SPAN:
                out.append(f"{' and '.join(sorted(names))} is {port}, inside {RENDEZVOUS} "
                           f"+ 1..{RENDEZVOUS_SPAN} ({rendezvous + 1}-"
                           f"{rendezvous + RENDEZVOUS_SPAN}), which rank 0 binds with "
                           f"dp-attention: move one of them")
    return out


# A server that crashes only after loading takes up to start_timeout + restart_delay per
# start: the start-limit window must hold burst such starts, or systemd never stops it.
START_LIMIT = ("sglang_service_restart_interval", "sglang_service_restart_burst",
               "sglang_service_start_timeout", "sglang_service_restart_delay")


def start_limit_problems(settings: Mapping[str, Any]) -> list[str]:
    """The start-limit window too short to stop a server that crashes after a full load."""
    if not all(name in settings for name in START_LIMIT):
        return []
    interval, burst, timeout, delay = (_number(settings[name], int) for name in START_LIMIT)
    if None in (interval, burst, timeout, delay):
        return []  # rule_problem names the value that is no number
    least = burst * (timeout + delay)
    if interval > least:
        return []
    return [f"sglang_service_restart_interval is {interval}: {burst} starts of a server that "
            f"crashes after a full load take up to {least} s (sglang_service_restart_burst x "
            f"(sglang_service_start_timeout + sglang_service_restart_delay)), so systemd would "
            f"reload it forever: set it above {least}, or leave it unset (derived so)"]


def setting_problems(settings: Mapping[str, Any]) -> list[str]:
    """One message per setting out of range (unknown names are refused: a typo in a
    role's list must not pass unchecked), then the host's port clashes."""
    if not isinstance(settings, Mapping):
        raise AnsibleFilterError(f"setting_problems wants a mapping, got {type(settings).__name__}")
    unknown = sorted(set(settings) - set(RULES))
    if unknown:
        raise AnsibleFilterError(f"no range rule for {unknown}: add one to plugins/filter/settings.py")
    out = [problem for name, value in settings.items()
           if (problem := rule_problem(name, value, RULES[name])) is not None]
    return out + port_problems(settings) + start_limit_problems(settings)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"setting_names": setting_names, "setting_problems": setting_problems}
