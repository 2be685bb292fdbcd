"""Shape the sglang-router deployment: its workers, the model it fronts, its argv.

Pure functions, unit-tested in tests/unit/test_sglang_router.py. The workers are the rank-0
endpoints of the SGLang servers (the sglang_service_endpoint fact that
roles/sglang_service/tasks/endpoint.yml publishes); ranks >= 1 of a multi-node server
serve no API and are never workers.
"""
from __future__ import annotations

import re
from typing import Any

from ansible.errors import AnsibleFilterError

POLICIES = ("random", "round_robin", "cache_aware", "power_of_two", "manual")
LOG_LEVELS = ("debug", "info", "warn", "error")
# What the role sets itself; extra_args may not repeat them. --api-key would show in ps.
OWNED_FLAGS = ("--host", "--port", "--worker-urls", "--policy", "--api-key",
               "--request-timeout-secs", "--shutdown-grace-period-secs",
               "--worker-startup-timeout-secs", "--worker-startup-check-interval",
               "--health-check-interval-secs", "--health-check-timeout-secs",
               "--health-failure-threshold", "--health-success-threshold",
               "--prometheus-host", "--prometheus-port", "--log-level")
# Settings that must be whole numbers >= 1 (seconds, counts, ports).
POSITIVE = ("port", "request_timeout", "shutdown_grace_period", "worker_startup_timeout",
            "worker_startup_check_interval", "health_check_interval",
            "health_check_timeout", "health_failure_threshold", "health_success_threshold",
            "prometheus_port")
# The endpoint fields a router copies from its workers: all workers must agree on them.
MODEL_FIELDS = ("variant", "served_model_name", "model_path", "reasoning", "tool_calls",
                "sglang_version")
_URL = re.compile(r"^https?://[^/\s]+$")


def _rank(endpoint: dict[str, Any]) -> int:
    try:
        return int(endpoint["rank"])
    except (KeyError, TypeError, ValueError):
        raise AnsibleFilterError(f"endpoint fact without a numeric rank: {endpoint!r}")


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def sglang_router_worker_endpoints(hosts: list[str],
                                   hostvars: dict[str, Any]) -> list[dict[str, Any]]:
    """The rank-0 endpoint fact of every server among hosts, one per URL, sorted by URL."""
    if not hosts:
        raise AnsibleFilterError("the router has no server hosts: is its server group "
                                 "(sglang_router_server_group) empty or missing?")
    found: dict[str, dict[str, Any]] = {}
    for host in hosts:
        endpoint = (hostvars.get(host) or {}).get("sglang_service_endpoint")
        if not isinstance(endpoint, dict):
            raise AnsibleFilterError(
                f"{host} has no sglang_service_endpoint fact: run roles/sglang_service "
                "tasks_from: endpoint on sglang_servers first (playbooks/router.yml "
                "does), and do not --limit the servers away; a host that failed earlier "
                "in this run has none either")
        if _rank(endpoint) != 0:
            continue
        url = str(endpoint.get("cluster_url") or "")
        if not _URL.match(url):
            raise AnsibleFilterError(f"{host}: cluster_url {url!r} is not http(s)://host:port")
        found.setdefault(url, {**endpoint, "host": host})
    if not found:
        raise AnsibleFilterError(f"no rank-0 server among {sorted(hosts)}")
    return [found[url] for url in sorted(found)]


def sglang_router_worker_urls(hosts: list[str], hostvars: dict[str, Any]) -> list[str]:
    """The worker URLs: rank 0's cluster_url of each server, unique, sorted."""
    return [e["cluster_url"] for e in sglang_router_worker_endpoints(hosts, hostvars)]


def sglang_router_model(hosts: list[str], hostvars: dict[str, Any]) -> dict[str, Any]:
    """What every worker serves; refused unless all workers serve the same model the same way."""
    endpoints = sglang_router_worker_endpoints(hosts, hostvars)
    first = endpoints[0]
    for other in endpoints[1:]:
        differ = [f for f in MODEL_FIELDS if str(other.get(f)) != str(first.get(f))]
        if differ:
            shown = ", ".join(f"{f} {first.get(f)!r} vs {other.get(f)!r}" for f in differ)
            raise AnsibleFilterError(
                f"a router's workers must serve one model the same way: {first['host']} "
                f"and {other['host']} differ ({shown}). Point sglang_router_server_group "
                "at servers of one model")
    model = {f: first.get(f) for f in MODEL_FIELDS}
    model["reasoning"] = _bool(model["reasoning"])
    model["tool_calls"] = _bool(model["tool_calls"])
    return model


def sglang_router_problems(settings: dict[str, Any]) -> list[str]:
    """Everything wrong with the router's settings, each naming the variable to change."""
    problems = []
    urls = settings.get("worker_urls")
    if not isinstance(urls, list) or not urls:
        problems.append("sglang_router_worker_urls is empty: the router needs at least one "
                        "worker (the rank-0 cluster_url of each server)")
    else:
        bad = [u for u in urls if not isinstance(u, str) or not _URL.match(u)]
        if bad:
            problems.append(f"sglang_router_worker_urls: {bad} are not http(s)://host:port")
        if len(set(urls)) != len(urls):
            problems.append("sglang_router_worker_urls lists a URL twice")
    if settings.get("policy") not in POLICIES:
        problems.append(f"sglang_router_policy {settings.get('policy')!r} is not one of "
                        f"{', '.join(POLICIES)}")
    if settings.get("log_level") not in LOG_LEVELS:
        problems.append(f"sglang_router_log_level {settings.get('log_level')!r} is not one "
                        f"of {', '.join(LOG_LEVELS)}")
    for name in POSITIVE:
        value = settings.get(name)
        try:
            ok = int(value) >= 1 and str(int(value)) == str(value).strip()
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"sglang_router_{name} must be a whole number >= 1, not {value!r}")
    if not problems:
        if int(settings["health_check_timeout"]) > int(settings["health_check_interval"]):
            problems.append("sglang_router_health_check_timeout must not exceed "
                            "sglang_router_health_check_interval")
        if int(settings["port"]) == int(settings["prometheus_port"]):
            problems.append("sglang_router_port and sglang_router_prometheus_port are equal")
    for arg in settings.get("extra_args") or []:
        if not isinstance(arg, str):
            problems.append(f"sglang_router_extra_args: {arg!r} is not a string")
        elif arg.split("=", 1)[0] in OWNED_FLAGS:
            problems.append(f"sglang_router_extra_args: {arg.split('=', 1)[0]} is set by its "
                            "own variable (and --api-key would show in ps: the key comes "
                            "from sglang_router_api_key through a 0640 file)")
    return problems


def sglang_router_argv(settings: dict[str, Any]) -> list[str]:
    """The router's flags (no worker URLs, no API key: the launcher adds both from files)."""
    problems = sglang_router_problems(settings)
    if problems:
        raise AnsibleFilterError(" | ".join(problems))
    argv = ["--host", str(settings["host"]), "--port", str(settings["port"]),
            "--policy", settings["policy"],
            "--request-timeout-secs", str(settings["request_timeout"]),
            "--shutdown-grace-period-secs", str(settings["shutdown_grace_period"]),
            "--worker-startup-timeout-secs", str(settings["worker_startup_timeout"]),
            "--worker-startup-check-interval", str(settings["worker_startup_check_interval"]),
            "--health-check-interval-secs", str(settings["health_check_interval"]),
            "--health-check-timeout-secs", str(settings["health_check_timeout"]),
            "--health-failure-threshold", str(settings["health_failure_threshold"]),
            "--health-success-threshold", str(settings["health_success_threshold"]),
            "--prometheus-host", str(settings["prometheus_host"]),
            "--prometheus-port", str(settings["prometheus_port"]),
            "--log-level", settings["log_level"]]
    return argv + [str(a) for a in settings.get("extra_args") or []]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sglang_router_worker_endpoints": sglang_router_worker_endpoints,
                "sglang_router_worker_urls": sglang_router_worker_urls,
                "sglang_router_model": sglang_router_model,
                "sglang_router_problems": sglang_router_problems,
                "sglang_router_argv": sglang_router_argv}
