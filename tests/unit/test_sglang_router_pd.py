"""The gateway in prefill/decode (PD) mode: the role's launcher reading typed workers from
its worker file, and the sglang_router_workers module changing a running PD gateway's
workers through its /workers API (worker_type and bootstrap_port in the POST body).

The real-gateway tests start the role's launcher under sglang-router 0.3.2 and smg 1.13.0
in front of the simulator's two halves (tools/sglang_sim, PD mode); like
tests/unit/test_sglang_router.py they need SGLANG_ROUTER_PYTHON or SMG_PYTHON (`make unit`
sets both). The gateway's output goes to a file that every failure shows.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_router as flt
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_router as api

from conftest import ROOT
from sim_process import SIM_SRC, Sim, free_port
from test_sglang_router import (GATEWAY_PYTHONS, KEY, LAUNCHER, SMG, _installed, endpoint,
                                fake_smg_entry, launcher, settings)

MODEL = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "8",
         "--tool-call-parser", "kimi_k2", "--api-key", KEY]
QUESTION = {"text": "Question: What is 15% of 240?\nAnswer:",
            "sampling_params": {"max_new_tokens": 32, "temperature": 0}}


# ---------------------------------------------------------------- filter
# Endpoint facts as roles/sglang_service/tasks/endpoint.yml publishes them for PD servers:
# disaggregation_mode, and bootstrap_port on a prefill (null otherwise).
def pd_endpoint(url, mode, rank=0, bootstrap_port=None):
    return endpoint(url, rank=rank, disaggregation_mode=mode,
                    bootstrap_port=8998 if mode == "prefill" and bootstrap_port is None
                    else bootstrap_port)


@pytest.fixture
def pools():
    """A prefill pool of one two-node server and one single node, a decode pool of one."""
    hostvars = {
        "p1": {"sglang_service_endpoint": pd_endpoint("http://10.0.3.1:30000", "prefill")},
        "p2": {"sglang_service_endpoint": pd_endpoint("http://10.0.3.1:30000", "prefill", 1)},
        "p3": {"sglang_service_endpoint": pd_endpoint("http://10.0.3.3:30000", "prefill",
                                                      bootstrap_port="9000")},
        "d1": {"sglang_service_endpoint": pd_endpoint("http://10.0.4.1:30000", "decode")},
    }
    groups = {"kimi_prefill": ["p1", "p2", "p3"], "kimi_decode": ["d1"],
              "kimi_mono": ["m1"], "empty": []}
    return groups, hostvars


def test_pools_give_typed_workers_rank_zero_only(pools):
    groups, hostvars = pools
    result = flt.sglang_router_pools(groups, hostvars, "kimi_prefill", "kimi_decode", "")
    assert result == {"workers": [
        {"url": "http://10.0.3.1:30000", "worker_type": "prefill", "bootstrap_port": 8998},
        {"url": "http://10.0.3.3:30000", "worker_type": "prefill", "bootstrap_port": 9000},
        {"url": "http://10.0.4.1:30000", "worker_type": "decode", "bootstrap_port": None}],
        "hosts": ["p1", "p2", "p3", "d1"]}


# Each refused before any host is touched (preflight.yml evaluates the pools), naming the
# variable to change.
@pytest.mark.parametrize("args, change, message", [
    (("kimi_prefill", "", ""), None,
     "sglang_router_prefill_group is set ('kimi_prefill') but sglang_router_decode_group is "
     "not: a prefill/decode router needs both pools"),
    (("", "kimi_decode", ""), None,
     "sglang_router_decode_group is set ('kimi_decode') but sglang_router_prefill_group is not"),
    (("kimi_prefill", "kimi_decode", "sglang_servers"), None,
     "sglang_router_server_group ('sglang_servers') is set beside sglang_router_prefill_group "
     "and sglang_router_decode_group"),
    (("kimi_prefill", "kimi_prefill", ""), None, "both name 'kimi_prefill'"),
    (("kimi_prefill", "no_such_group", ""), None,
     "sglang_router_decode_group 'no_such_group' names no inventory group with hosts"),
    (("empty", "kimi_decode", ""), None,
     "sglang_router_prefill_group 'empty' names no inventory group with hosts"),
    (("kimi_prefill", "kimi_decode", ""), ("p3", {"bootstrap_port": None}),
     "p3 is a prefill server that publishes no bootstrap port (bootstrap_port None in its "
     "sglang_service_endpoint): set sglang_service_disaggregation_bootstrap_port"),
    (("kimi_prefill", "kimi_decode", ""), ("p3", {"bootstrap_port": 70000}),
     "publishes no bootstrap port (bootstrap_port 70000"),
    (("kimi_prefill", "kimi_decode", ""), ("d1", {"disaggregation_mode": "prefill"}),
     "d1 is in sglang_router_decode_group ('kimi_decode') but serves disaggregation_mode "
     "'prefill': set sglang_service_disaggregation_mode: decode for its servers"),
    (("kimi_prefill", "kimi_decode", ""), ("p2", {"disaggregation_mode": ""}),
     "p2 is in sglang_router_prefill_group ('kimi_prefill') but serves disaggregation_mode "
     "'none (monolithic)'"),
    (("kimi_prefill", "kimi_decode", ""), ("p1", {"sglang_service_endpoint": None}),
     "p1 has no sglang_service_endpoint fact"),
])
def test_pools_refuse_naming_the_variable(pools, args, change, message):
    groups, hostvars = pools
    if change:
        host, fields = change
        if "sglang_service_endpoint" in fields:
            hostvars[host] = {}
        else:
            hostvars[host]["sglang_service_endpoint"].update(fields)
    with pytest.raises(flt.AnsibleFilterError) as refused:
        flt.sglang_router_pools(groups, hostvars, *args)
    assert message in str(refused.value)


def test_a_host_in_both_pools_is_refused(pools):
    groups, hostvars = pools
    groups["kimi_decode"].append("p3")
    with pytest.raises(flt.AnsibleFilterError, match="p3 is in both pools"):
        flt.sglang_router_pools(groups, hostvars, "kimi_prefill", "kimi_decode")


def test_a_monolithic_router_refuses_a_pd_server(pools):
    _, hostvars = pools
    with pytest.raises(flt.AnsibleFilterError,
                       match="d1 is a decode server .* name its pool in "
                             "sglang_router_decode_group"):
        flt.sglang_router_worker_urls(["d1"], hostvars)


def test_the_model_spans_both_pools(pools):
    groups, hostvars = pools
    hostvars["d1"]["sglang_service_endpoint"]["sglang_version"] = "0.5.23"
    with pytest.raises(flt.AnsibleFilterError, match="sglang_version '0.5.6.post1' vs '0.5.23'"):
        flt.sglang_router_model(groups["kimi_prefill"] + groups["kimi_decode"], hostvars)


PD_WORKERS = [
    {"url": "http://10.0.3.1:30000", "worker_type": "prefill", "bootstrap_port": 8998},
    {"url": "http://10.0.4.1:30000", "worker_type": "decode", "bootstrap_port": None}]


def pd_settings(**more):
    return settings(**{"pd": True, "workers": PD_WORKERS,
                       "worker_urls": [w["url"] for w in PD_WORKERS], **more})


@pytest.mark.parametrize("gateway", [{}, SMG], ids=["sglang-router", "smg"])
def test_pd_argv_checks_against_each_gateways_manifest(gateway):
    chosen = pd_settings(**gateway)
    argv = flt.sglang_router_argv(chosen)
    assert argv.count("--pd-disaggregation") == 1
    assert flt.sglang_router_worker_argv(PD_WORKERS) == [
        "--prefill", "http://10.0.3.1:30000", "8998", "--decode", "http://10.0.4.1:30000"]
    manifest = flt.sglang_router_manifest(chosen["gateway"], chosen["package"])
    assert flt.router_argv_problems(argv + flt.sglang_router_worker_argv(PD_WORKERS),
                                    manifest) == []
    # The pools' flags are the role's: not through extra_args.
    for flag in ("--pd-disaggregation", "--prefill", "--decode"):
        assert any(f"{flag} is set by its own variable" in p for p in
                   flt.sglang_router_problems(pd_settings(**gateway, extra_args=[flag])))


@pytest.mark.parametrize("change, message", [
    ({"workers": PD_WORKERS[:1]}, "a prefill/decode router without decode workers"),
    ({"pd": False}, "prefill/decode workers for a monolithic router"),
])
def test_pd_settings_need_both_kinds(change, message):
    problems = flt.sglang_router_problems(pd_settings(**change))
    assert any(message in p for p in problems), problems


def test_a_gateway_without_pd_flags_is_refused(monkeypatch):
    # As a pinned gateway whose parser lacked the PD flags would be: the flag names come
    # from the manifest, not from the role.
    manifest = flt.sglang_router_manifest("smg", "smg==1.13.0")
    trimmed = {**manifest, "options": [o for o in manifest["options"]
                                       if o["dest"] not in ("pd_disaggregation", "prefill")]}
    monkeypatch.setattr(flt, "sglang_router_manifest", lambda *_: trimmed)
    problems = flt.sglang_router_problems(pd_settings(**SMG))
    assert any("--pd-disaggregation is not a flag of this gateway" in p for p in problems)
    assert any("--prefill is not a flag of this gateway" in p for p in problems)


def test_launcher_turns_typed_workers_into_the_gateways_pd_flags(tmp_path):
    (tmp_path / "workers").write_text(
        "# managed\nprefill http://10.0.3.1:30000 8998  # node 0\n\n"
        "decode http://10.0.4.1:30000\nprefill http://10.0.3.2:30000 8999\n")
    assert launcher.read_workers(str(tmp_path / "workers")) == ([], [
        "--prefill", "http://10.0.3.1:30000", "8998", "--decode", "http://10.0.4.1:30000",
        "--prefill", "http://10.0.3.2:30000", "8999"])


@pytest.mark.parametrize("content, message", [
    ("decode http://a:1 2\n", "workers:1: expected URL"),
    ("prefill\n", "workers:1: expected URL"),
    ("http://a:1 http://b:1\n", "workers:1: expected URL"),
])
def test_launcher_refuses_a_worker_line_it_cannot_read(tmp_path, content, message):
    (tmp_path / "workers").write_text(content)
    with pytest.raises(SystemExit, match=message):
        launcher.read_workers(str(tmp_path / "workers"))


def _launch(tmp_path, workers, flags):
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "workers").write_text(workers)
    launcher.main(["--package", "smg", "--api-key-file", str(tmp_path / "key"),
                   "--worker-urls-file", str(tmp_path / "workers"), "--", *flags])


def test_launcher_hands_pd_workers_to_the_gateways_parser(tmp_path, monkeypatch):
    started = fake_smg_entry(monkeypatch)
    _launch(tmp_path, "prefill http://p:1 8998\ndecode http://d:1\n",
            ["--pd-disaggregation", "--port", "1"])
    assert started == {"flags": ["--pd-disaggregation", "--port", "1", "--prefill", "http://p:1",
                                 "8998", "--decode", "http://d:1"],
                       "api_key": KEY, "worker_urls": []}


@pytest.mark.parametrize("workers, flags, message", [
    ("prefill http://p:1 8998\n", ["--port", "1"], "not started with --pd-disaggregation"),
    ("http://w:1\n", ["--pd-disaggregation"], "lists regular workers"),
])
def test_launcher_refuses_workers_of_the_other_mode(tmp_path, monkeypatch, workers, flags,
                                                    message):
    started = fake_smg_entry(monkeypatch)
    with pytest.raises(SystemExit, match=message):
        _launch(tmp_path, workers, flags)
    assert started == {}


@pytest.mark.parametrize("flag", ["--prefill", "--decode"])
def test_launcher_refuses_pd_workers_among_the_flags(flag):
    with pytest.raises(SystemExit, match=f"refusing {flag}"):
        launcher.split_argv(["--api-key-file", "k", "--worker-urls-file", "w", "--",
                             "--pd-disaggregation", flag, "http://a:1"])


# ---------------------------------------------------------------- the real gateways
real_pd = pytest.mark.parametrize("package", [
    pytest.param(package, marks=pytest.mark.skipif(
        not _installed(package), reason=f"set {var} to a Python with the gateway installed"))
    for package, var in (("sglang_router", "SGLANG_ROUTER_PYTHON"), ("smg", "SMG_PYTHON"))])


@real_pd
def test_the_rendered_pd_command_parses_with_the_real_gateways_parser(package):
    gateway = SMG if package == "smg" else {}
    argv = (flt.sglang_router_argv(pd_settings(**gateway))
            + flt.sglang_router_worker_argv(PD_WORKERS))
    parsed = subprocess.run(
        [GATEWAY_PYTHONS[package], "-c",
         f"import json, sys; from {package}.launch_router import parse_router_args; "
         "a = parse_router_args(sys.argv[1:]); "
         "print(json.dumps([a.pd_disaggregation, a.prefill_urls, a.decode_urls, a.policy]))",
         *argv], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr[-3000:]
    assert json.loads(parsed.stdout.splitlines()[-1]) == [
        True, [["http://10.0.3.1:30000", 8998]], ["http://10.0.4.1:30000"], "cache_aware"]


class Gateway:
    """The role's launcher running a real gateway in PD mode, its output kept in a file."""

    def __init__(self, package, tmp_path, workers):
        self.log = tmp_path / f"{package}.log"
        (tmp_path / "key").write_text(KEY + "\n")
        (tmp_path / "workers").write_text(workers)
        self.port = free_port()
        with self.log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [GATEWAY_PYTHONS[package], str(LAUNCHER), "--package", package,
                 "--api-key-file", str(tmp_path / "key"),
                 "--worker-urls-file", str(tmp_path / "workers"), "--",
                 "--pd-disaggregation", "--host", "127.0.0.1", "--port", str(self.port),
                 "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()),
                 "--health-check-interval-secs", "1", "--worker-startup-check-interval", "1",
                 "--log-level", "info"],
                env={**os.environ, "PYTHONPATH": str(SIM_SRC)},
                stdout=sink, stderr=subprocess.STDOUT)
        self.router = api.Router(f"http://127.0.0.1:{self.port}", KEY, 10)

    def tail(self):
        return self.log.read_text(errors="replace")[-4000:]

    def until(self, what, check, budget=120):
        """Poll check() until true; on timeout or the gateway's exit, fail with its log.
        Generous: CI runs the container suites beside this one."""
        deadline = time.monotonic() + budget
        while True:
            try:
                if check():
                    return
            except (api.RouterError, OSError):
                pass
            assert self.proc.poll() is None, f"the gateway exited ({what}):\n{self.tail()}"
            assert time.monotonic() < deadline, f"never {what}:\n{self.tail()}"
            time.sleep(0.3)

    def readiness(self):
        return self.router.call("GET", "/readiness")[0]

    def generate(self):
        status, body = self.router.call("POST", "/generate", QUESTION)
        return json.loads(body)["text"] if status == 200 else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def halves():
    """A prefill and a decode half, single node each, sharing the gateway's key."""
    bootstrap = free_port()
    prefill = Sim([*MODEL, "--disaggregation-mode", "prefill",
                   "--disaggregation-bootstrap-port", str(bootstrap)], api_key=KEY,
                  env={"SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": "5"})
    decode = Sim([*MODEL, "--disaggregation-mode", "decode"], api_key=KEY,
                 env={"SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "5"})
    for sim in (prefill, decode):
        sim.wait_ready()
    yield (f"http://127.0.0.1:{prefill.port}", bootstrap, f"http://127.0.0.1:{decode.port}")
    for sim in (prefill, decode):
        sim.stop()


@real_pd
def test_the_module_gives_a_pd_gateway_its_workers_through_the_api(package, halves,
                                                                   tmp_path):
    prefill, bootstrap, decode = halves
    wanted = [{"url": prefill, "worker_type": "prefill", "bootstrap_port": bootstrap},
              {"url": decode, "worker_type": "decode"}]
    # Started from the worker file with the prefill only: not ready without a decode.
    gateway = Gateway(package, tmp_path, f"prefill {prefill} {bootstrap}\n")
    try:
        gateway.until("listed the prefill from the worker file", lambda: [
            (w["url"], w["worker_type"], w["bootstrap_port"], w["healthy"])
            for w in gateway.router.workers()] == [(prefill, "prefill", bootstrap, True)])
        assert gateway.readiness() == 503, gateway.tail()
        # The decode comes through the API, typed: ready, and /generate goes through both.
        changed, _, after = api.converge(gateway.router, wanted, "present",
                                         worker_api_key=KEY, exclusive=True, timeout=60,
                                         interval=0.3)
        assert changed, gateway.tail()
        assert sorted((w["url"], w["worker_type"], w["healthy"]) for w in after) == sorted(
            [(prefill, "prefill", True), (decode, "decode", True)])
        gateway.until("ready with both kinds", lambda: gateway.readiness() == 200)
        gateway.until("served /generate through both halves",
                      lambda: "36" in (gateway.generate() or ""))
        assert not api.converge(gateway.router, wanted, "present", worker_api_key=KEY,
                                exclusive=True, timeout=60)[0]
        # The decode removed: no longer ready, nothing served; added back: serves again.
        changed, _, after = api.converge(gateway.router, [decode], "absent", timeout=60,
                                         interval=0.3)
        assert changed and [w["url"] for w in after] == [prefill], gateway.tail()
        gateway.until("unready without a decode", lambda: gateway.readiness() == 503)
        assert gateway.generate() is None
        api.converge(gateway.router, wanted, "present", worker_api_key=KEY, exclusive=True,
                     timeout=60, interval=0.3)
        gateway.until("served again", lambda: "36" in (gateway.generate() or ""))
    finally:
        gateway.stop()


@real_pd
def test_a_worker_registered_as_the_wrong_kind_is_replaced(package, halves, tmp_path):
    prefill, bootstrap, decode = halves
    # The prefill registered with a wrong bootstrap port (the gateway would tell the decode
    # a port nobody listens on) and the decode as a prefill.
    wrong = free_port()
    gateway = Gateway(package, tmp_path, f"prefill {prefill} {wrong}\nprefill {decode}\n")
    try:
        gateway.until("listed both from the worker file", lambda: sorted(
            (w["url"], w["worker_type"], w["bootstrap_port"], w["healthy"])
            for w in gateway.router.workers()) == sorted(
                [(prefill, "prefill", wrong, True), (decode, "prefill", None, True)]))
        wanted = [{"url": prefill, "worker_type": "prefill", "bootstrap_port": bootstrap},
                  {"url": decode, "worker_type": "decode"}]
        changed, _, after = api.converge(gateway.router, wanted, "present",
                                         worker_api_key=KEY, exclusive=True, timeout=60,
                                         interval=0.3)
        assert changed
        assert sorted((w["url"], w["worker_type"], w["bootstrap_port"]) for w in after) == \
            sorted([(prefill, "prefill", bootstrap), (decode, "decode", None)]), gateway.tail()
        gateway.until("served /generate", lambda: "36" in (gateway.generate() or ""))
    finally:
        gateway.stop()


# ---------------------------------------------------------------- the role, on the controller
# The role's preflight (the tasks its main runs first, before any host is touched) and its
# endpoint entry point, run by ansible-playbook on the controller against servers' endpoint
# facts; the worker file is rendered from the role's template. Connects to nothing.
ROLE_PLAY = """
- hosts: sglang_routers
  gather_facts: false
  tasks:
    - ansible.builtin.import_role: {name: sglang_router, tasks_from: preflight}
    - ansible.builtin.import_role: {name: sglang_router, tasks_from: endpoint}
    - ansible.builtin.debug:
        msg:
          endpoint: "{{ sglang_service_endpoint }}"
          workers: "{{ lookup('ansible.builtin.template', workers_template) }}"
      vars:
        ansible_managed: managed
"""


def role_inventory(tmp_path, router_vars, change=None):
    def server(url, mode, port=None):
        return {"sglang_service_endpoint": {**pd_endpoint(url, mode, bootstrap_port=port),
                                            "sglang_version": "0.5.23"}}
    hosts = {"pre1": server("http://10.0.3.1:30000", "prefill", 8998),
             "dec1": server("http://10.0.4.1:30000", "decode"),
             "dec2": server("http://10.0.4.2:30000", "decode")}
    for host, fields in (change or {}).items():
        hosts[host]["sglang_service_endpoint"].update(fields)
    inventory = {"all": {"children": {
        "sglang_servers": {"children": {
            "kimi_prefill": {"hosts": {"pre1": hosts["pre1"]}},
            "kimi_decode": {"hosts": {"dec1": hosts["dec1"], "dec2": hosts["dec2"]}}}},
        "sglang_routers": {"hosts": {"r1": {
            "ansible_connection": "local", "sglang_router_api_key": KEY,
            "workers_template": str(ROOT / "roles/sglang_router/templates/workers.j2"),
            **router_vars}}}}}}
    (tmp_path / "hosts.yml").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(ROLE_PLAY)
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
             "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"})


POOLS = {"sglang_router_prefill_group": "kimi_prefill",
         "sglang_router_decode_group": "kimi_decode"}


def test_the_role_describes_a_pd_router_and_writes_its_typed_worker_file(tmp_path):
    run = role_inventory(tmp_path, POOLS)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    result = json.loads(run.stdout)["plays"][0]["tasks"][-1]["hosts"]["r1"]["msg"]
    shown = result["endpoint"]
    assert shown["mode"] == "pd" and shown["router_package"] == "smg==1.13.0"
    assert shown["prefill_workers"] == [{"url": "http://10.0.3.1:30000",
                                         "worker_type": "prefill", "bootstrap_port": 8998}]
    assert shown["decode_workers"] == ["http://10.0.4.1:30000", "http://10.0.4.2:30000"]
    assert "--pd-disaggregation" in shown["argv"]
    assert shown["worker_argv"] == ["--prefill", "http://10.0.3.1:30000", "8998",
                                    "--decode", "http://10.0.4.1:30000",
                                    "--decode", "http://10.0.4.2:30000"]
    (tmp_path / "workers").write_text(result["workers"])
    lines = [line for line in result["workers"].splitlines()
             if line and not line.startswith("#")]
    assert lines == ["prefill http://10.0.3.1:30000 8998", "decode http://10.0.4.1:30000",
                     "decode http://10.0.4.2:30000"]
    # What the launcher makes of that file is the endpoint's worker_argv.
    assert launcher.read_workers(str(tmp_path / "workers"))[1] == shown["worker_argv"]


@pytest.mark.parametrize("router_vars, change, message", [
    ({"sglang_router_prefill_group": "kimi_prefill"}, None,
     "sglang_router_prefill_group is set ('kimi_prefill') but sglang_router_decode_group"),
    ({**POOLS, "sglang_router_server_group": "sglang_servers"}, None,
     "sglang_router_server_group ('sglang_servers') is set beside"),
    (POOLS, {"pre1": {"bootstrap_port": None}}, "pre1 is a prefill server that publishes no "
     "bootstrap port"),
    ({}, None, "pre1 is a prefill server (sglang_service_disaggregation_mode) in the server "
     "group of a monolithic router"),
])
def test_the_roles_preflight_refuses_bad_pools(tmp_path, router_vars, change, message):
    # The wiring of each refusal kind; every message of the pools: the filter's tests above.
    run = role_inventory(tmp_path, router_vars, change)
    assert run.returncode != 0
    assert message in " ".join((run.stdout + run.stderr).split()), run.stdout[-4000:]
    assert '"endpoint"' not in run.stdout
