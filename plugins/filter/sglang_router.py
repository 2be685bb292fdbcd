"""Shape the gateway deployment: its workers, the model it fronts, its argv.

Pure functions, unit-tested in tests/unit/test_sglang_router.py. The workers are the rank-0
endpoints of the SGLang servers (the sglang_service_endpoint fact that
roles/sglang_service/tasks/endpoint.yml publishes); ranks >= 1 of a multi-node server
serve no API and are never workers.

Two gateways, one role: smg (SGLang Model Gateway) and sglang-router 0.3.2. Both take the
flags the role sets under the same names; every rendered command is checked against the
flag manifest of the pinned gateway package (manifests/router/<package>-<version>.json,
written by tools/gen_router_manifest.py from the real wheel), so a flag the chosen gateway
does not have is refused before any host is touched.

Prefill/decode (PD) mode: the router fronts two pools, sglang_router_prefill_group and
sglang_router_decode_group, instead of sglang_router_server_group. Each worker is then
typed: a prefill with the bootstrap port its server publishes, or a decode. The gateways
take them as --prefill URL BOOTSTRAP_PORT / --decode URL (what the role's launcher makes of
the worker file) and through their /workers API (worker_type, bootstrap_port), so a pool
change needs no restart in PD mode either.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.kimi_k2.sglang.plugins.module_utils.argv_check import read_argv

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "manifests" / "router"
GATEWAYS = ("smg", "sglang-router")
# Flags whose value is a secret (a key, a password, a URL that may carry credentials):
# never on the command line, where `ps` and the unit would show it.
_SECRET_DEST = re.compile(r"api_key|password|db_url|redis_url")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")
# What the role sets itself; extra_args may not repeat them. --api-key would show in ps.
OWNED_FLAGS = ("--host", "--port", "--worker-urls", "--policy", "--api-key",
               "--pd-disaggregation", "--prefill", "--decode",
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


def _endpoint(host: str, hostvars: dict[str, Any]) -> dict[str, Any]:
    endpoint = (hostvars.get(host) or {}).get("sglang_service_endpoint")
    if not isinstance(endpoint, dict):
        raise AnsibleFilterError(
            f"{host} has no sglang_service_endpoint fact: run roles/sglang_service "
            "tasks_from: endpoint on sglang_servers first (playbooks/router.yml "
            "does), and do not --limit the servers away; a host that failed earlier "
            "in this run has none either")
    return endpoint


def _mode(endpoint: dict[str, Any]) -> str:
    return str(endpoint.get("disaggregation_mode") or "").strip().lower()


def sglang_router_worker_endpoints(hosts: list[str], hostvars: dict[str, Any],
                                   variable: str = "sglang_router_server_group"
                                   ) -> list[dict[str, Any]]:
    """The rank-0 endpoint fact of every server among hosts, one per URL, sorted by URL."""
    if not hosts:
        raise AnsibleFilterError(f"the router has no server hosts: is its server group "
                                 f"({variable}) empty or missing?")
    found: dict[str, dict[str, Any]] = {}
    for host in hosts:
        endpoint = _endpoint(host, hostvars)
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
    """The worker URLs of a monolithic router: rank 0's cluster_url of each server, unique,
    sorted. A prefill or decode server is refused: it answers only as one half of a pair."""
    for host in hosts or []:
        mode = _mode(_endpoint(host, hostvars))
        if mode:
            raise AnsibleFilterError(
                f"{host} is a {mode} server (sglang_service_disaggregation_mode) in the "
                "server group of a monolithic router (sglang_router_server_group): name its "
                f"pool in sglang_router_{mode}_group, and the other pool in "
                f"sglang_router_{'decode' if mode == 'prefill' else 'prefill'}_group, "
                "instead")
    return [e["cluster_url"] for e in sglang_router_worker_endpoints(hosts, hostvars)]


PD_KINDS = ("prefill", "decode")


def sglang_router_pools(groups: dict[str, list[str]], hostvars: dict[str, Any],
                        prefill_group: str, decode_group: str,
                        server_group: str = "") -> dict[str, Any]:
    """A PD router's workers and server hosts from its two pools.

    Returns {"workers": [{"url", "worker_type", "bootstrap_port"}] (prefills, then decodes,
    each sorted by URL), "hosts": every host of both pools}. Refused, naming the variable:
    one pool without the other, the pools beside sglang_router_server_group, a pool group
    that is missing or empty, a host whose disaggregation_mode is not its pool's, a prefill
    server that publishes no bootstrap port, a server in both pools."""
    named = {"prefill": str(prefill_group or ""), "decode": str(decode_group or "")}
    missing = [k for k in PD_KINDS if not named[k]]
    if len(missing) == 1:
        given = "decode" if missing == ["prefill"] else "prefill"
        raise AnsibleFilterError(
            f"sglang_router_{given}_group is set ({named[given]!r}) but "
            f"sglang_router_{missing[0]}_group is not: a prefill/decode router needs both "
            "pools. Set both, or neither for a monolithic router on "
            "sglang_router_server_group")
    if missing:
        raise AnsibleFilterError("sglang_router_prefill_group and sglang_router_decode_group "
                                 "are not set: this router is not a prefill/decode router")
    if server_group:
        raise AnsibleFilterError(
            f"sglang_router_server_group ({server_group!r}) is set beside "
            "sglang_router_prefill_group and sglang_router_decode_group: a router is either "
            "monolithic or prefill/decode. Set sglang_router_server_group: '' for this "
            "router (a host var or a child group's var overrides sglang_routers' group_vars)")
    if named["prefill"] == named["decode"]:
        raise AnsibleFilterError(
            f"sglang_router_prefill_group and sglang_router_decode_group both name "
            f"{named['prefill']!r}: the two pools are different groups of servers")
    workers: list[dict[str, Any]] = []
    hosts: list[str] = []
    seen: dict[str, str] = {}
    for kind in PD_KINDS:
        variable = f"sglang_router_{kind}_group"
        members = list((groups or {}).get(named[kind]) or [])
        if not members:
            raise AnsibleFilterError(
                f"{variable} {named[kind]!r} names no inventory group with hosts: name the "
                f"group of the {kind} servers (their sglang_service_disaggregation_mode: "
                f"{kind})")
        for host in members:
            if host in seen:
                raise AnsibleFilterError(
                    f"{host} is in both pools (sglang_router_prefill_group "
                    f"{named['prefill']!r} and sglang_router_decode_group "
                    f"{named['decode']!r}): a server is a prefill or a decode, not both")
            seen[host] = kind
            mode = _mode(_endpoint(host, hostvars))
            if mode != kind:
                raise AnsibleFilterError(
                    f"{host} is in {variable} ({named[kind]!r}) but serves "
                    f"disaggregation_mode {mode or 'none (monolithic)'!r}: set "
                    f"sglang_service_disaggregation_mode: {kind} for its servers, or take "
                    f"it out of {named[kind]}")
        hosts += members
        for endpoint in sglang_router_worker_endpoints(members, hostvars, variable):
            worker = {"url": endpoint["cluster_url"], "worker_type": kind,
                      "bootstrap_port": None}
            if kind == "prefill":
                worker["bootstrap_port"] = _bootstrap_port(endpoint)
            workers.append(worker)
    return {"workers": workers, "hosts": hosts}


def _bootstrap_port(endpoint: dict[str, Any]) -> int:
    value = endpoint.get("bootstrap_port")
    try:
        port = int(value)
        ok = 1 <= port <= 65535 and str(port) == str(value).strip()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AnsibleFilterError(
            f"{endpoint['host']} is a prefill server that publishes no bootstrap port "
            f"(bootstrap_port {value!r} in its sglang_service_endpoint): set "
            "sglang_service_disaggregation_bootstrap_port for its group; the router hands "
            "it to the decode side")
    return port


def sglang_router_regular_workers(urls: list[str]) -> list[dict[str, Any]]:
    """A monolithic router's workers in the typed form the PD pools use."""
    return [{"url": url, "worker_type": "regular", "bootstrap_port": None} for url in urls]


def sglang_router_worker_argv(workers: list[dict[str, Any]]) -> list[str]:
    """The gateway flags that name the workers, as the role's launcher builds them from the
    worker file: --worker-urls for regular workers, --prefill URL PORT and --decode URL."""
    regular = [w["url"] for w in workers if w.get("worker_type", "regular") == "regular"]
    argv = ["--worker-urls", *regular] if regular else []
    for worker in workers:
        if worker.get("worker_type") == "prefill":
            argv += ["--prefill", worker["url"], str(worker["bootstrap_port"])]
        elif worker.get("worker_type") == "decode":
            argv += ["--decode", worker["url"]]
    return argv


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
                "(or the two pools, sglang_router_prefill_group and "
                "sglang_router_decode_group) at servers of one model")
    model = {f: first.get(f) for f in MODEL_FIELDS}
    model["reasoning"] = _bool(model["reasoning"])
    model["tool_calls"] = _bool(model["tool_calls"])
    return model


@lru_cache(maxsize=None)
def _load_manifest(name: str) -> dict[str, Any]:
    return json.loads((MANIFEST_DIR / f"{name}.json").read_text())


def sglang_router_manifest(gateway: str, package: str) -> dict[str, Any]:
    """The flag manifest of the pinned gateway package; refused with the fix when none fits."""
    if gateway not in GATEWAYS:
        raise AnsibleFilterError(f"sglang_router_gateway {gateway!r} is not one of "
                                 f"{', '.join(GATEWAYS)}")
    pin = _PIN.match(str(package).strip())
    if not pin:
        raise AnsibleFilterError(
            f"sglang_router_package {package!r} is not pinned as NAME==VERSION: the role "
            "checks the router's flags against the manifest of that exact version")
    name = pin.group(1).lower().replace("_", "-")
    if name != gateway:
        raise AnsibleFilterError(
            f"sglang_router_package {package!r} is not the {gateway} package that "
            f"sglang_router_gateway chooses: pin {gateway}==VERSION, or set "
            f"sglang_router_gateway: {name}")
    stem = f"{name}-{pin.group(2)}"
    if not (MANIFEST_DIR / f"{stem}.json").is_file():
        known = sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))
        raise AnsibleFilterError(
            f"no flag manifest for {package} (sglang_router_package); known: {known}. "
            f"Write one from the wheel: python tools/gen_router_manifest.py "
            f"<wheel> > manifests/router/{stem}.json")
    return _load_manifest(stem)


def _options(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {opt: o for o in manifest["options"] for opt in o["opts"]}


def router_argv_problems(argv: list[str], manifest: dict[str, Any]) -> list[str]:
    """Check a gateway command line against its manifest, as its argparse parser would, but
    stricter: flags written out in full, each non-repeatable flag at most once, and no flag
    that carries a secret."""
    label = f" ({manifest['package']} {manifest['version']})"
    found, problems = read_argv(
        argv, _options(manifest),
        "a flag of this gateway (see its manifest in manifests/router/)",
        lambda option: option["kind"] != "flag", label)
    seen: set[str] = set()
    for occurrence in found:
        flag, option = occurrence.flag, occurrence.option
        if _SECRET_DEST.search(option["dest"]):
            problems.append(f"{flag} carries a secret, which would show in ps and the unit: "
                            "the API key comes from sglang_router_api_key through a 0640 "
                            "file; other secrets are not supported on the command line")
        if option["dest"] in seen and not option["repeatable"]:
            problems.append(f"{flag} is given twice{label}: the last would win silently")
        seen.add(option["dest"])
    return problems


def _choices(manifest: dict[str, Any], flag: str) -> list[str]:
    return list(_options(manifest)[flag]["choices"] or [])


def sglang_router_problems(settings: dict[str, Any]) -> list[str]:
    """Everything wrong with the router's settings, each naming the variable to change."""
    problems = []
    try:
        manifest = sglang_router_manifest(str(settings.get("gateway")),
                                          str(settings.get("package")))
    except AnsibleFilterError as error:
        return [str(error)]
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
    gateway = f"{manifest['package']} {manifest['version']}"
    for name, flag in (("policy", "--policy"), ("log_level", "--log-level")):
        choices = _choices(manifest, flag)
        if settings.get(name) not in choices:
            problems.append(f"sglang_router_{name} {settings.get(name)!r} is not one of "
                            f"{', '.join(choices)} ({gateway})")
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
    workers = settings.get("workers") or []
    kinds = {str(w.get("worker_type")) for w in workers if isinstance(w, dict)}
    if _bool(settings.get("pd")):
        for kind in PD_KINDS:
            if kind not in kinds:
                problems.append(f"a prefill/decode router without {kind} workers: "
                                f"sglang_router_{kind}_group has no {kind} server")
    elif kinds - {"regular"}:
        problems.append("prefill/decode workers for a monolithic router: set "
                        "sglang_router_prefill_group and sglang_router_decode_group")
    if not problems:
        problems += [f"the rendered router command (sglang_router_extra_args?): {p}"
                     for p in router_argv_problems(
                         _render(settings) + sglang_router_worker_argv(workers), manifest)]
    return problems


def sglang_router_argv(settings: dict[str, Any]) -> list[str]:
    """The router's flags (no worker URLs, no API key: the launcher adds both from files)."""
    problems = sglang_router_problems(settings)
    if problems:
        raise AnsibleFilterError(" | ".join(problems))
    return _render(settings)


def _render(settings: dict[str, Any]) -> list[str]:
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
    if _bool(settings.get("pd")):
        argv.append("--pd-disaggregation")
    return argv + [str(a) for a in settings.get("extra_args") or []]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sglang_router_worker_endpoints": sglang_router_worker_endpoints,
                "sglang_router_worker_urls": sglang_router_worker_urls,
                "sglang_router_pools": sglang_router_pools,
                "sglang_router_regular_workers": sglang_router_regular_workers,
                "sglang_router_worker_argv": sglang_router_worker_argv,
                "sglang_router_model": sglang_router_model,
                "sglang_router_problems": sglang_router_problems,
                "sglang_router_manifest": sglang_router_manifest,
                "sglang_router_argv": sglang_router_argv}
