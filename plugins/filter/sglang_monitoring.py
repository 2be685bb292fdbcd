"""Shape the fleet's monitoring: Prometheus scrape targets, alert and recording rules and
Grafana dashboards, all derived from the endpoints the inventory describes.

Pure functions, unit-tested in tests/unit/test_sglang_monitoring.py; the rules are also
checked and unit-tested by the real promtool (tests/unit/test_monitoring_rules.py, the
cases in tests/unit/promtool/) and the dashboards' queries run against a real Prometheus
scraping simulators (tests/unit/test_monitoring_dashboards.py).

The inputs are the sglang_service_endpoint facts (roles/sglang_service/tasks/endpoint.yml
for servers, roles/sglang_router/tasks/endpoint.yml for routers). Jobs:

- sglang_servers: rank 0 of every server with metrics on, /metrics (sglang:* series).
- sglang_ranks: every rank of every server, /health: ranks >= 1 of a multi-node server
  serve no /metrics (SGLang answers 404), only /health, whose empty 200 Prometheus reads
  as a scrape of no samples. `up` of this job says whether each rank is alive and
  healthy; the label `metrics` says which ranks serve metrics ("none" for ranks >= 1).
- sglang_routers: each router's exporter (smg_* series).
- dcgm_exporters, node_exporters: hosts that run them.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

JOBS = ("sglang_servers", "sglang_ranks", "sglang_routers", "dcgm_exporters", "node_exporters")
OBJECTIVES = ("ttft_p95_seconds", "itl_p95_seconds")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


# ---------------------------------------------------------------- targets

def _hostport(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if not parts.hostname or not parts.port:
        raise AnsibleFilterError(f"sglang_monitoring: cannot read a host and port from {url!r}")
    return parts.hostname, parts.port


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _endpoint(hostvars: Mapping[str, Any], host: str) -> dict[str, Any]:
    endpoint = hostvars[host].get("sglang_service_endpoint")
    if not endpoint:
        raise AnsibleFilterError(
            f"sglang_monitoring: {host} has no sglang_service_endpoint fact: describe the "
            "endpoints first (playbooks/endpoints.yml)")
    return dict(endpoint)


def sglang_monitoring_targets(servers: list[str], hostvars: Mapping[str, Any],
                              routers: list[str] | None = None,
                              dcgm_port: int = 9400,
                              node_exporter_port: int | None = None) -> dict[str, list]:
    """One file_sd list per job (JOBS), from the servers' and routers' endpoint facts.

    A host with nvidia_driver_dcgm_exporter_enabled gets a DCGM exporter target; with a
    node_exporter_port, every host gets a node exporter target.
    """
    jobs: dict[str, list] = {job: [] for job in JOBS}
    addresses: dict[str, str] = {}
    for host in servers:
        ep = _endpoint(hostvars, host)
        address, port = _hostport(ep["cluster_url"])
        addresses[host] = address
        rank, nnodes = int(ep["rank"]), int(ep["nnodes"])
        metrics = bool(ep.get("metrics")) and str(ep.get("metrics")).lower() != "false"
        labels = {"deployment_group": str(ep["group"]), "variant": str(ep["variant"]),
                  "sglang_version": str(ep["sglang_version"]), "rank": str(rank),
                  "nnodes": str(nnodes), "host": host}
        target = _address(address, port)
        serves = "sglang" if rank == 0 and metrics else ("none" if rank else "disabled")
        jobs["sglang_ranks"].append({"targets": [target],
                                     "labels": {**labels, "metrics": serves}})
        if serves == "sglang":
            jobs["sglang_servers"].append({"targets": [target], "labels": labels})
    for host in routers or []:
        ep = _endpoint(hostvars, host)
        address, _ = _hostport(ep["cluster_url"])
        addresses.setdefault(host, address)
        prom_host, prom_port = _hostport(ep["prometheus_url"])
        jobs["sglang_routers"].append({
            "targets": [_address(address if prom_host in LOOPBACK else prom_host, prom_port)],
            "labels": {"router": host, "host": host, "variant": str(ep["variant"])}})
    for host, address in addresses.items():
        if str(hostvars[host].get("nvidia_driver_dcgm_exporter_enabled", False)).lower() == "true":
            jobs["dcgm_exporters"].append({"targets": [_address(address, dcgm_port)],
                                           "labels": {"host": host}})
        if node_exporter_port:
            jobs["node_exporters"].append({"targets": [_address(address, node_exporter_port)],
                                           "labels": {"host": host}})
    return jobs


def sglang_monitoring_groups(targets: Mapping[str, list]) -> list[str]:
    """The deployment groups the targets name, sorted."""
    return sorted({t["labels"]["deployment_group"] for t in targets.get("sglang_ranks", [])})


# ---------------------------------------------------------------- validation

def _positive(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == value and 0 < value < float("inf"))


def sglang_monitoring_problems(settings: Mapping[str, Any], inventory_hosts: list[str],
                               routers: list[str] | None = None,
                               hostvars: Mapping[str, Any] | None = None) -> list[str]:
    """What is wrong with the monitoring settings, one message each naming the variable.

    settings: the role's variables (sglang_monitoring_*). inventory_hosts: every host of the
    inventory (groups.all).
    """
    out = []
    objectives = settings.get("sglang_monitoring_objectives")
    if not isinstance(objectives, Mapping) or "default" not in objectives:
        out.append("sglang_monitoring_objectives must be a mapping with a 'default' entry "
                   f"({', '.join(OBJECTIVES)}), got {objectives!r}")
        objectives = {}
    for group, values in objectives.items():
        if not isinstance(values, Mapping):
            out.append(f"sglang_monitoring_objectives.{group} must be a mapping of "
                       f"{', '.join(OBJECTIVES)}, got {values!r}")
            continue
        for key, value in values.items():
            if key not in OBJECTIVES:
                out.append(f"sglang_monitoring_objectives.{group}.{key} is not an objective: "
                           f"use {', '.join(OBJECTIVES)}")
            elif not _positive(value):
                out.append(f"sglang_monitoring_objectives.{group}.{key} is {value!r}: set a "
                           "positive number of seconds")
        if group == "default":
            out += [f"sglang_monitoring_objectives.default lacks {key}: set it (seconds)"
                    for key in OBJECTIVES if key not in values]
    for name in ("sglang_monitoring_host", "sglang_monitoring_grafana_host"):
        host = settings.get(name)
        if host and host not in inventory_hosts:
            out.append(f"{name} is {host!r}, which is not a host of this inventory: name an "
                       "inventory host, or leave it empty")
    if hostvars is not None and settings.get("sglang_monitoring_scraper_remote"):
        for host in routers or []:
            bind = hostvars[host].get("sglang_router_prometheus_host", "127.0.0.1")
            if str(bind) in LOOPBACK:
                out.append(f"sglang_router_prometheus_host is {bind} on {host}: a Prometheus "
                           "on another host cannot scrape it; set it to 0.0.0.0 or the "
                           "host's cluster address")
    return out


# ---------------------------------------------------------------- rules

def _s(seconds: Any) -> str:
    return f"{int(seconds)}s"


def sglang_monitoring_rules(settings: Mapping[str, Any], groups: list[str]) -> dict[str, Any]:
    """The rule file (recording rules, per-group objectives, alerts) as a mapping to dump
    as YAML. settings: the sglang_monitoring_* variables; groups: the deployment groups."""
    window = _s(settings["sglang_monitoring_rate_window"])
    down_for = _s(settings["sglang_monitoring_down_for"])
    alert_for = _s(settings["sglang_monitoring_alert_for"])
    latency_for = _s(settings["sglang_monitoring_latency_for"])
    queue = settings["sglang_monitoring_queue_threshold"]
    usage = settings["sglang_monitoring_token_usage_ratio"]
    temperature = settings["sglang_monitoring_gpu_temperature_celsius"]
    objectives = settings["sglang_monitoring_objectives"]

    def p95(metric: str) -> str:
        return (f"histogram_quantile(0.95, sum by (deployment_group, le) "
                f"(rate({metric}_bucket{{job=\"sglang_servers\"}}[{window}])))")

    recording = [
        {"record": "deployment_group:sglang_ttft_seconds:p95", "expr": p95("sglang:time_to_first_token_seconds")},
        {"record": "deployment_group:sglang_itl_seconds:p95", "expr": p95("sglang:inter_token_latency_seconds")},
        {"record": "deployment_group:sglang_e2e_seconds:p95", "expr": p95("sglang:e2e_request_latency_seconds")},
        {"record": "deployment_group:sglang_generation_tokens:rate",
         "expr": f"sum by (deployment_group) (rate(sglang:generation_tokens_total{{job=\"sglang_servers\"}}[{window}]))"},
        {"record": "deployment_group:sglang_requests:rate",
         "expr": f"sum by (deployment_group) (rate(sglang:num_requests_total{{job=\"sglang_servers\"}}[{window}]))"},
        {"record": "deployment_group:sglang_ranks_up:sum",
         "expr": "sum by (deployment_group) (up{job=\"sglang_ranks\"})"},
        {"record": "deployment_group:sglang_ranks:count",
         "expr": "count by (deployment_group) (up{job=\"sglang_ranks\"})"},
    ]
    for group in groups:
        chosen = {**objectives["default"], **dict(objectives.get(group) or {})}
        for key in OBJECTIVES:
            recording.append({"record": f"sglang_objective:{key}", "expr": f"vector({chosen[key]})",
                              "labels": {"deployment_group": group}})

    def alert(name: str, expr: str, wait: str, severity: str, summary: str) -> dict[str, Any]:
        return {"alert": name, "expr": expr, "for": wait, "labels": {"severity": severity},
                "annotations": {"summary": summary}}

    alerts = [
        alert("SGLangServerDown",
              "deployment_group:sglang_ranks_up:sum == 0", down_for, "critical",
              "Every rank of {{ $labels.deployment_group }} is down"),
        alert("SGLangGroupPartlyDown",
              "deployment_group:sglang_ranks_up:sum > 0 and deployment_group:sglang_ranks_up:sum"
              " < deployment_group:sglang_ranks:count", down_for, "critical",
              "{{ $labels.deployment_group }} has {{ printf \"%.4g\" $value }} ranks up, not all: a "
              "multi-node group with a rank down serves nothing"),
        alert("SGLangRankDown", "up{job=\"sglang_ranks\"} == 0", down_for, "warning",
              "Rank {{ $labels.rank }} of {{ $labels.deployment_group }} ({{ $labels.host }}) "
              "fails /health"),
        alert("SGLangHealthFailing",
              "up{job=\"sglang_servers\"} == 1 and on (instance) up{job=\"sglang_ranks\"} == 0",
              down_for, "critical",
              "{{ $labels.host }} serves /metrics but fails /health: the process runs, the "
              "scheduler does not answer"),
        alert("SGLangQueueGrowing",
              f"sum by (deployment_group, instance) (sglang:num_queue_reqs) > {queue} and "
              f"sum by (deployment_group, instance) (deriv(sglang:num_queue_reqs[{window}])) > 0",
              alert_for, "warning",
              "{{ $labels.deployment_group }}: {{ printf \"%.4g\" $value }} requests queued and growing"),
        alert("SGLangTTFTAboveObjective",
              "deployment_group:sglang_ttft_seconds:p95 > on (deployment_group) "
              "sglang_objective:ttft_p95_seconds", latency_for, "warning",
              "{{ $labels.deployment_group }}: p95 time to first token {{ printf \"%.4g\" $value }} s is above "
              "its objective"),
        alert("SGLangITLAboveObjective",
              "deployment_group:sglang_itl_seconds:p95 > on (deployment_group) "
              "sglang_objective:itl_p95_seconds", latency_for, "warning",
              "{{ $labels.deployment_group }}: p95 inter-token latency {{ printf \"%.4g\" $value }} s is above "
              "its objective"),
        alert("SGLangTokenUsageHigh", f"max by (deployment_group, instance) (sglang:token_usage) > {usage}",
              alert_for, "warning",
              "{{ $labels.deployment_group }}: KV cache token usage {{ printf \"%.4g\" $value }} is near full"),
        alert("SGLangThroughputStalled",
              f"sum by (deployment_group, instance) (rate(sglang:generation_tokens_total[{window}])) == 0"
              " and on (deployment_group, instance) sum by (deployment_group, instance) "
              "(sglang:num_queue_reqs + sglang:num_running_reqs) > 0", alert_for, "critical",
              "{{ $labels.deployment_group }} generates nothing while requests wait"),
        alert("SGLangRouterDown", "up{job=\"sglang_routers\"} == 0", down_for, "critical",
              "The router on {{ $labels.host }} does not answer its metrics port"),
        alert("SGLangRouterWorkerUnhealthy", "smg_worker_health == 0", down_for, "warning",
              "Router {{ $labels.router }} marks worker {{ $labels.worker }} unhealthy"),
        alert("GPUXidError", "DCGM_FI_DEV_XID_ERRORS > 0", "0s", "critical",
              "GPU {{ $labels.gpu }} on {{ $labels.host }} reported XID {{ printf \"%.4g\" $value }}"),
        alert("GPUDoubleBitECC", f"increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[{window}]) > 0", "0s",
              "critical", "GPU {{ $labels.gpu }} on {{ $labels.host }} had uncorrectable ECC errors"),
        alert("GPUTemperatureHigh", f"DCGM_FI_DEV_GPU_TEMP > {temperature}", alert_for, "warning",
              "GPU {{ $labels.gpu }} on {{ $labels.host }} is at {{ printf \"%.4g\" $value }} C"),
        alert("SGLangGSM8KBelowThreshold", "sglang_gsm8k_accuracy < sglang_gsm8k_threshold",
              "0s", "critical",
              "The last GSM8K gate of {{ $labels.host }} scored {{ printf \"%.4g\" $value }}, below its threshold"),
    ]
    return {"groups": [{"name": "sglang_recording", "rules": recording},
                       {"name": "sglang_alerts", "rules": alerts}]}


def sglang_monitoring_gsm8k_rules(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """The verify report's last GSM8K results as series Prometheus reads from a rule file
    (no exporter, no push): sglang_gsm8k_accuracy and sglang_gsm8k_threshold per host."""
    rules = []
    for entry in (report or {}).get("hosts", []):
        gsm8k = entry.get("gsm8k")
        if not gsm8k or gsm8k.get("accuracy") is None:
            continue
        labels = {"host": str(entry["host"]), "deployment_group": str(entry.get("group", entry["host"]))}
        rules.append({"record": "sglang_gsm8k_accuracy", "expr": f"vector({float(gsm8k['accuracy'])})",
                      "labels": labels})
        if gsm8k.get("threshold") is not None:
            rules.append({"record": "sglang_gsm8k_threshold",
                          "expr": f"vector({float(gsm8k['threshold'])})", "labels": labels})
    return {"groups": [{"name": "sglang_gsm8k", "rules": rules}]}


# ---------------------------------------------------------------- Prometheus

def sglang_monitoring_prometheus_config(settings: Mapping[str, Any], config_dir: str,
                                        alertmanagers: list[str] | None = None) -> dict[str, Any]:
    """prometheus.yml: one job per file_sd file of config_dir/targets, the rule files of
    config_dir/rules, and the Alertmanagers (host:port) to send alerts to."""
    interval = _s(settings["sglang_monitoring_scrape_interval"])
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": _s(settings["sglang_monitoring_evaluation_interval"])},
        "rule_files": [f"{config_dir}/rules/*.yml"],
        "scrape_configs": [
            {"job_name": job,
             **({"metrics_path": "/health"} if job == "sglang_ranks" else {}),
             "file_sd_configs": [{"files": [f"{config_dir}/targets/{job}.json"],
                                  "refresh_interval": "30s"}]}
            for job in JOBS],
    }
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": alertmanagers}]}]}
    return config


# ---------------------------------------------------------------- dashboards

# (title, PromQL, unit) per panel, per dashboard. Every query must return series against a
# fleet that serves (tests/unit/test_monitoring_dashboards.py).
DASHBOARDS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "sglang-fleet": ("SGLang fleet overview", [
        ("Ranks up per group", "deployment_group:sglang_ranks_up:sum", "short"),
        ("Requests running", "sum by (deployment_group) (sglang:num_running_reqs)", "short"),
        ("Requests queued", "sum by (deployment_group) (sglang:num_queue_reqs)", "short"),
        ("Generation tokens/s", "deployment_group:sglang_generation_tokens:rate", "short"),
        ("TTFT p95", "deployment_group:sglang_ttft_seconds:p95", "s"),
        ("Inter-token latency p95", "deployment_group:sglang_itl_seconds:p95", "s"),
        ("KV cache token usage", "max by (deployment_group) (sglang:token_usage)", "percentunit"),
        ("Firing alerts", "count by (alertname) (ALERTS{alertstate=\"firing\"}) or vector(0)", "short"),
    ]),
    "sglang-server": ("SGLang server", [
        ("Running and queued requests",
         "sum by (instance) (sglang:num_running_reqs{deployment_group=~\"$group\"}) "
         "+ sum by (instance) (sglang:num_queue_reqs{deployment_group=~\"$group\"})", "short"),
        ("Prompt tokens/s", f"sum by (instance) (rate(sglang:prompt_tokens_total{{deployment_group=~\"$group\"}}[$__rate_interval]))", "short"),
        ("Generation tokens/s", f"sum by (instance) (rate(sglang:generation_tokens_total{{deployment_group=~\"$group\"}}[$__rate_interval]))", "short"),
        ("TTFT p50/p95", "histogram_quantile(0.95, sum by (le) (rate(sglang:time_to_first_token_seconds_bucket{deployment_group=~\"$group\"}[$__rate_interval])))", "s"),
        ("E2E latency p95", "histogram_quantile(0.95, sum by (le) (rate(sglang:e2e_request_latency_seconds_bucket{deployment_group=~\"$group\"}[$__rate_interval])))", "s"),
        ("Cache hit rate", "avg by (instance) (sglang:cache_hit_rate{deployment_group=~\"$group\"})", "percentunit"),
        ("Token usage", "max by (instance) (sglang:token_usage{deployment_group=~\"$group\"})", "percentunit"),
        ("Rank health", "up{job=\"sglang_ranks\", deployment_group=~\"$group\"}", "short"),
    ]),
    "sglang-router": ("SGLang router", [
        ("Router up", "up{job=\"sglang_routers\"}", "short"),
        ("Worker health", "smg_worker_health", "short"),
        ("HTTP requests/s", "sum by (router) (rate(smg_http_requests_total[$__rate_interval]))", "short"),
        ("Workers in pool", "smg_worker_pool_size", "short"),
    ]),
    "sglang-gpus": ("GPUs (DCGM)", [
        ("GPU utilisation", "DCGM_FI_DEV_GPU_UTIL", "percent"),
        ("Framebuffer used", "DCGM_FI_DEV_FB_USED", "decmbytes"),
        ("Temperature", "DCGM_FI_DEV_GPU_TEMP", "celsius"),
        ("Power", "DCGM_FI_DEV_POWER_USAGE", "watt"),
        ("Last XID", "DCGM_FI_DEV_XID_ERRORS", "short"),
    ]),
}


def _panel(index: int, title: str, expr: str, unit: str) -> dict[str, Any]:
    return {"id": index + 1, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": "A", "expr": expr, "legendFormat": "__auto"}]}


def sglang_monitoring_dashboards(inventory: str = "") -> dict[str, dict[str, Any]]:
    """uid -> Grafana dashboard JSON (schema 38), with a data source variable and, on
    the server dashboard, a deployment group variable; titled after the inventory."""
    out = {}
    for uid, (title, panels) in DASHBOARDS.items():
        title = f"{title} ({inventory})" if inventory else title
        variables: list[dict[str, Any]] = [{"name": "datasource", "type": "datasource",
                                            "query": "prometheus", "label": "Data source"}]
        if uid == "sglang-server":
            variables.append({"name": "group", "type": "query", "label": "Deployment group",
                              "datasource": {"type": "prometheus", "uid": "${datasource}"},
                              "query": "label_values(up{job=\"sglang_servers\"}, deployment_group)",
                              "includeAll": True, "multi": False, "refresh": 2})
        out[uid] = {"uid": uid, "title": title, "schemaVersion": 38, "version": 1,
                    "tags": ["sglang", "kimi-k2"], "time": {"from": "now-1h", "to": "now"},
                    "refresh": "30s", "templating": {"list": variables},
                    "panels": [_panel(i, *p) for i, p in enumerate(panels)]}
    return out


def sglang_monitoring_queries(dashboards: Mapping[str, Any], group: str = ".*",
                              rate_interval: str = "1m") -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL with Grafana's variables filled) per panel."""
    out = []
    for uid, board in dashboards.items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", rate_interval)
                out.append((uid, panel["title"], expr.replace("$group", group)))
    return out


def sglang_monitoring_json(data: Any) -> str:
    """Stable JSON text of a file_sd list or dashboard (sorted keys, 2-space indent)."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "sglang_monitoring_targets": sglang_monitoring_targets,
            "sglang_monitoring_groups": sglang_monitoring_groups,
            "sglang_monitoring_problems": sglang_monitoring_problems,
            "sglang_monitoring_rules": sglang_monitoring_rules,
            "sglang_monitoring_gsm8k_rules": sglang_monitoring_gsm8k_rules,
            "sglang_monitoring_prometheus_config": sglang_monitoring_prometheus_config,
            "sglang_monitoring_dashboards": sglang_monitoring_dashboards,
            "sglang_monitoring_json": sglang_monitoring_json,
        }
