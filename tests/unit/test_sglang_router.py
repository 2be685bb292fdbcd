"""The gateway (smg or sglang-router): worker selection and argv (filter), the /workers API
client (module), and the launcher that keeps the API key out of argv.

The module is tested against a small fake router here (127.0.0.1 only), in the manner of
either gateway. The tests marked real_router run the real binaries (sglang-router 0.3.2,
smg 1.13.0) in front of simulator workers; each is skipped unless SGLANG_ROUTER_PYTHON or
SMG_PYTHON names a Python that has the gateway installed:

    python3 -m venv /tmp/router-venv && /tmp/router-venv/bin/pip install sglang-router==0.3.2
    python3 -m venv /tmp/smg-venv && /tmp/smg-venv/bin/pip install smg==1.13.0
    SGLANG_ROUTER_PYTHON=/tmp/router-venv/bin/python SMG_PYTHON=/tmp/smg-venv/bin/python \
        pytest tests/unit/test_sglang_router.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import types
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_router as flt
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_router as api
from ansible_collections.kimi_k2.sglang.plugins.modules import sglang_router_workers as workers_module

from conftest import ROOT, load_file, run_module
from sim_process import SIM_SRC, Sim, free_port

LAUNCHER = ROOT / "roles" / "sglang_router" / "files" / "sglang-router-launch.py"
launcher = load_file("sglang_router_launch", LAUNCHER)
KEY = "router-test-key-0123456789"


# ---------------------------------------------------------------- filter
def endpoint(url, rank=0, variant="thinking", name="moonshotai/Kimi-K2-Thinking", **more):
    return {"cluster_url": url, "rank": str(rank), "variant": variant,
            "served_model_name": name, "model_path": "/srv/models/k2", "reasoning": "True",
            "tool_calls": True, "sglang_version": "0.5.6.post1", **more}


@pytest.fixture
def fleet():
    return {
        "a1": {"sglang_service_endpoint": endpoint("http://10.0.0.2:30000")},
        "a2": {"sglang_service_endpoint": endpoint("http://10.0.0.1:30000")},
        # node 1 of a two-node server: not a worker
        "b1": {"sglang_service_endpoint": endpoint("http://10.0.1.1:30000")},
        "b2": {"sglang_service_endpoint": endpoint("http://10.0.1.2:30000", rank=1)},
    }


def test_worker_urls_are_rank_zero_unique_and_sorted(fleet):
    fleet["a3"] = {"sglang_service_endpoint": endpoint("http://10.0.0.1:30000")}
    urls = flt.sglang_router_worker_urls(["a1", "a2", "b1", "b2", "a3"], fleet)
    assert urls == ["http://10.0.0.1:30000", "http://10.0.0.2:30000", "http://10.0.1.1:30000"]


def test_worker_urls_need_every_endpoint_fact(fleet):
    fleet["a2"] = {}
    with pytest.raises(flt.AnsibleFilterError, match="a2 has no sglang_service_endpoint"):
        flt.sglang_router_worker_urls(["a1", "a2"], fleet)


def test_worker_urls_refuse_an_empty_group():
    with pytest.raises(flt.AnsibleFilterError, match="sglang_router_server_group"):
        flt.sglang_router_worker_urls([], {})


def test_model_is_what_every_worker_serves(fleet):
    model = flt.sglang_router_model(["a1", "a2", "b1", "b2"], fleet)
    assert model == {"variant": "thinking", "served_model_name": "moonshotai/Kimi-K2-Thinking",
                     "model_path": "/srv/models/k2", "reasoning": True, "tool_calls": True,
                     "sglang_version": "0.5.6.post1"}


def test_model_refuses_workers_of_different_models(fleet):
    fleet["b1"]["sglang_service_endpoint"] = endpoint(
        "http://10.0.1.1:30000", variant="instruct", name="moonshotai/Kimi-K2-Instruct",
        reasoning=False)
    with pytest.raises(flt.AnsibleFilterError, match="variant 'thinking' vs 'instruct'"):
        flt.sglang_router_model(["a1", "b1", "b2"], fleet)


def settings(**more):
    base = {"worker_urls": ["http://10.0.0.1:30000"], "host": "0.0.0.0", "port": 30080,
            "policy": "cache_aware", "request_timeout": 3600, "shutdown_grace_period": 180,
            "worker_startup_timeout": 3600, "worker_startup_check_interval": 10,
            "health_check_interval": 5, "health_check_timeout": 5,
            "health_failure_threshold": 3, "health_success_threshold": 2,
            "prometheus_host": "127.0.0.1", "prometheus_port": 29000, "log_level": "info",
            "extra_args": [], "gateway": "sglang-router", "package": "sglang-router==0.3.2"}
    return {**base, **more}


SMG = {"gateway": "smg", "package": "smg==1.13.0"}


def test_argv_has_every_setting_and_neither_key_nor_workers():
    argv = flt.sglang_router_argv(settings(extra_args=["--retry-max-retries", "3"]))
    pairs = dict(zip(argv[::2], argv[1::2]))
    assert pairs["--policy"] == "cache_aware"
    assert pairs["--request-timeout-secs"] == "3600"
    assert pairs["--health-check-interval-secs"] == "5"
    assert pairs["--prometheus-host"] == "127.0.0.1"
    assert argv[-2:] == ["--retry-max-retries", "3"]
    assert "--api-key" not in argv and "--worker-urls" not in argv


@pytest.mark.parametrize("change, message", [
    ({"worker_urls": []}, "sglang_router_worker_urls is empty"),
    ({"worker_urls": ["10.0.0.1:30000"]}, "not http"),
    ({"worker_urls": ["http://a:1", "http://a:1"]}, "twice"),
    ({"policy": "least_load"}, "sglang_router_policy 'least_load'"),
    ({"log_level": "trace"}, "sglang_router_log_level"),
    ({"request_timeout": 0}, "sglang_router_request_timeout must be a whole number"),
    ({"port": "x"}, "sglang_router_port must be a whole number"),
    ({"health_check_timeout": 10}, "must not exceed"),
    ({"prometheus_port": 30080}, "are equal"),
    ({"extra_args": ["--api-key=secret"]}, "--api-key is set by its own variable"),
    ({"extra_args": ["--policy", "random"]}, "--policy is set by its own variable"),
])
def test_problems_name_the_variable(change, message):
    problems = flt.sglang_router_problems(settings(**change))
    assert any(message in p for p in problems), problems
    with pytest.raises(flt.AnsibleFilterError):
        flt.sglang_router_argv(settings(**change))


def test_valid_settings_have_no_problems():
    assert flt.sglang_router_problems(settings()) == []
    assert flt.sglang_router_problems(settings(**SMG)) == []


def test_both_gateways_take_the_same_rendered_flags():
    assert flt.sglang_router_argv(settings()) == flt.sglang_router_argv(settings(**SMG))


# Each gateway's flags are its own manifest's: what one has and the other lacks is refused
# on the other, naming the gateway, before any host is touched.
@pytest.mark.parametrize("gateway, change, message", [
    ("sglang-router", {"extra_args": ["--upstream-http2"]},
     "--upstream-http2 is not a flag of this gateway (see its manifest in manifests/router/) "
     "(sglang-router 0.3.2)"),
    ("sglang-router", {"policy": "least_load"},
     "sglang_router_policy 'least_load' is not one of cache_aware, manual, power_of_two, "
     "random, round_robin (sglang-router 0.3.2)"),
    ("smg", {"extra_args": ["--no-such-flag"]}, "--no-such-flag is not a flag of this gateway"),
    ("smg", {"extra_args": ["--retry-max-retrie", "3"]},
     "--retry-max-retrie is an abbreviation of --retry-max-retries: write the full flag"),
    ("smg", {"extra_args": ["--retry-max-retries", "three"]},
     "--retry-max-retries expects int, got 'three' (smg 1.13.0)"),
    ("smg", {"extra_args": ["--upstream-http2=yes"]}, "--upstream-http2 takes no value"),
    ("smg", {"extra_args": ["--retry-max-retries", "3", "--retry-max-retries", "4"]},
     "--retry-max-retries is given twice"),
    ("smg", {"extra_args": ["--tenant-api-key", "team:secret"]},
     "--tenant-api-key carries a secret, which would show in ps"),
    ("smg", {"extra_args": ["--control-plane-api-keys", "k:n:admin:secret"]},
     "--control-plane-api-keys carries a secret"),
    ("smg", {"extra_args": ["--api-key", "secret"]}, "--api-key is set by its own variable"),
    ("smg", {"log_level": "trace"}, "sglang_router_log_level 'trace' is not one of"),
    ("smg", {"package": "sglang-router==0.3.2"},
     "sglang_router_package 'sglang-router==0.3.2' is not the smg package that "
     "sglang_router_gateway chooses"),
    ("smg", {"package": "smg>=1.13"}, "is not pinned as NAME==VERSION"),
    ("smg", {"package": "smg==9.9.9"},
     "no flag manifest for smg==9.9.9 (sglang_router_package); known: "
     "['sglang-router-0.3.2', 'smg-1.13.0']"),
    ("smg", {"gateway": "nginx"}, "sglang_router_gateway 'nginx' is not one of smg, sglang-router"),
])
def test_each_gateway_refuses_what_its_manifest_does_not_allow(gateway, change, message):
    chosen = SMG if gateway == "smg" else {}
    problems = flt.sglang_router_problems(settings(**{**chosen, **change}))
    assert any(message in p for p in problems), problems
    with pytest.raises(flt.AnsibleFilterError):
        flt.sglang_router_argv(settings(**{**chosen, **change}))


def test_smg_takes_its_own_flags_and_policies():
    argv = flt.sglang_router_argv(settings(**SMG, policy="least_load", extra_args=[
        "--upstream-http2", "--retry-max-retries=3", "--remove-unhealthy-workers"]))
    assert argv[-3:] == ["--upstream-http2", "--retry-max-retries=3", "--remove-unhealthy-workers"]
    assert dict(zip(argv[::2], argv[1::2]))["--policy"] == "least_load"


def test_every_flag_the_role_renders_is_in_both_manifests():
    for gateway in (settings(), settings(**SMG)):
        manifest = flt.sglang_router_manifest(gateway["gateway"], gateway["package"])
        assert flt.router_argv_problems(flt.sglang_router_argv(gateway), manifest) == []


# The role's rule (vars/main.yml): the gateway follows the workers' SGLang version unless
# sglang_router_gateway is set. Run through ansible-playbook on the controller (the
# endpoint entry point connects to nothing).
GATEWAY_PLAY = """
- hosts: sglang_routers
  gather_facts: false
  tasks:
    - ansible.builtin.import_role: {name: sglang_router, tasks_from: endpoint}
    - ansible.builtin.debug: {msg: "GATEWAY={{ sglang_service_endpoint.router_package }}"}
"""


@pytest.mark.parametrize("version, extra, expected", [
    ("0.5.6.post1", None, "GATEWAY=sglang-router==0.3.2"),
    ("0.5.23", None, "GATEWAY=smg==1.13.0"),
    ("0.6.0", None, "GATEWAY=smg==1.13.0"),
    ("0.5.6.post1", "sglang_router_gateway=smg", "GATEWAY=smg==1.13.0"),
    ("0.5.23", "sglang_router_gateway=nginx", "sglang_router_gateway 'nginx' is not one of"),
])
def test_the_default_gateway_follows_the_workers_sglang_version(tmp_path, version, extra,
                                                                expected):
    worker = {"cluster_url": "http://10.0.0.1:30000", "rank": 0, "variant": "instruct",
              "served_model_name": "m", "model_path": "/m", "reasoning": False,
              "tool_calls": True, "sglang_version": version}
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"children": {
        "sglang_servers": {"hosts": {"s1": {"sglang_service_endpoint": worker}}},
        "sglang_routers": {"hosts": {"r1": {"ansible_connection": "local"}}}}}}))
    (tmp_path / "play.yml").write_text(GATEWAY_PLAY)
    run = subprocess.run(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"),
                          str(tmp_path / "play.yml"), *(["-e", extra] if extra else [])],
                         capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert expected in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


# ---------------------------------------------------------------- fake router
class FakeRouter:
    """sglang-router 0.3.2's /workers API: async add (listed once healthy), async delete."""

    def __init__(self, reachable, delay=0.2, smg=False):
        self.reachable = set(reachable)  # worker URLs whose health check would pass
        self.delay = delay
        # smg 1.13.0: a removed worker stays listed as draining for a while, and a URL
        # still listed is refused with 409.
        self.smg = smg
        self.workers = {}
        self.lock = threading.Lock()
        self.posts = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seed(self, url, healthy=True, **typed):
        self.workers[str(uuid.uuid4())] = self.entry(url, healthy, **typed)

    def entry(self, url, healthy=True, worker_type=None, bootstrap_port=None):
        # Both gateways list a worker's type (and a prefill's bootstrap port) in PD mode.
        typed = {"worker_type": worker_type} if worker_type else {}
        if bootstrap_port is not None:
            typed["bootstrap_port"] = bootstrap_port
        if self.smg:
            return {"url": url, "is_healthy": healthy, "status": "ready", **typed}
        return {"url": url, "is_healthy": healthy, **typed}

    def later(self, action):
        timer = threading.Timer(self.delay, action)
        timer.daemon = True
        timer.start()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self):
                if self.headers.get("Authorization") == f"Bearer {KEY}":
                    return True
                self.reply(401, {"error": "Unauthorized"})
                return False

            def do_GET(self):
                if self.path == "/workers" and self.authorised():
                    with fake.lock:
                        listed = [{"id": i, **w} for i, w in fake.workers.items()]
                    self.reply(200, {"workers": listed, "total": len(listed)})

            def do_POST(self):
                if self.path != "/workers" or not self.authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.posts.append(body)
                worker_id = str(uuid.uuid4())
                if fake.smg and body["url"] in fake.listed():
                    return self.reply(409, {"code": "WORKER_ALREADY_EXISTS"})

                def add():
                    if body["url"] in fake.reachable and body.get("api_key") == KEY:
                        with fake.lock:
                            fake.workers[worker_id] = fake.entry(
                                body["url"], worker_type=body.get("worker_type"),
                                bootstrap_port=body.get("bootstrap_port"))
                fake.later(add)
                self.reply(202, {"status": "accepted", "worker_id": worker_id})

            def do_DELETE(self):
                if not self.authorised():
                    return
                worker_id = self.path.rsplit("/", 1)[-1]
                try:
                    uuid.UUID(worker_id)
                except ValueError:
                    return self.reply(400, {"error": "invalid worker id"})
                if worker_id not in fake.workers:
                    return self.reply(404, {"code": "WORKER_NOT_FOUND"})

                def remove():
                    with fake.lock:
                        fake.workers.pop(worker_id, None)
                if fake.smg:
                    fake.workers[worker_id].update(status="draining", is_healthy=False)
                fake.later(remove)
                self.reply(202, {"status": "accepted", "worker_id": worker_id})

        return Handler

    def listed(self):
        return sorted(w["url"] for w in self.workers.values())

    def close(self):
        self.server.shutdown()
        self.server.server_close()


W1, W2, W3 = "http://10.9.0.1:30000", "http://10.9.0.2:30000", "http://10.9.0.3:30000"


@pytest.fixture
def fake():
    router = FakeRouter(reachable=[W1, W2, W3])
    router.seed(W1)
    router.seed(W2)
    yield router
    router.close()


@pytest.fixture
def fake_smg():
    router = FakeRouter(reachable=[W1, W2, W3], delay=0.3, smg=True)
    router.seed(W1)
    router.seed(W2)
    yield router
    router.close()


def client(fake, key=KEY):
    return api.Router(fake.url, key, timeout=5)


def test_present_adds_missing_workers_and_waits_until_listed(fake):
    changed, before, after = api.converge(client(fake), [W3, W1], "present",
                                          worker_api_key=KEY, timeout=5, interval=0.05)
    assert changed
    assert [w["url"] for w in before] == [W1, W2]
    assert [w["url"] for w in after] == [W1, W2, W3] and all(w["healthy"] for w in after)
    assert fake.posts == [{"url": W3, "api_key": KEY}]


def test_present_is_idempotent(fake):
    changed, before, after = api.converge(client(fake), [W1, W2 + "/"], "present",
                                          worker_api_key=KEY, timeout=5, interval=0.05)
    assert not changed and before == after and fake.posts == []


def test_absent_deletes_by_id_and_waits_until_gone(fake):
    changed, _, after = api.converge(client(fake), [W2, W3], "absent", timeout=5,
                                     interval=0.05)
    assert changed and [w["url"] for w in after] == [W1] and fake.listed() == [W1]


def test_exclusive_removes_workers_not_asked_for(fake):
    changed, _, after = api.converge(client(fake), [W3], "present", worker_api_key=KEY,
                                     exclusive=True, timeout=5, interval=0.05)
    assert changed and [w["url"] for w in after] == [W3]


def test_check_mode_changes_nothing(fake):
    changed, before, after = api.converge(client(fake), [W3], "present", worker_api_key=KEY,
                                          exclusive=True, check_mode=True)
    assert changed and before == after and fake.posts == [] and fake.listed() == [W1, W2]


def test_no_wait_returns_at_once(fake):
    changed, _, after = api.converge(client(fake), [W3], "present", worker_api_key=KEY,
                                     wait=False)
    assert changed and W3 not in [w["url"] for w in after]


def test_an_unreachable_worker_times_out_with_the_listing(fake):
    with pytest.raises(api.RouterError, match=r"not listed and healthy .*10\.9\.0\.1:30000 "
                                              r"\(healthy\)"):
        api.converge(client(fake), ["http://10.9.9.9:30000"], "present",
                     worker_api_key=KEY, timeout=0.5, interval=0.05)


def test_a_listed_unhealthy_worker_is_waited_for(fake):
    fake.seed(W3, healthy=False)
    with pytest.raises(api.RouterError, match=r"10\.9\.0\.3:30000 \(unhealthy\)"):
        api.converge(client(fake), [W3], "present", worker_api_key=KEY, timeout=0.3,
                     interval=0.05)
    assert fake.posts == []


def test_smg_draining_worker_is_waited_out_then_gone(fake_smg):
    changed, _, after = api.converge(client(fake_smg), [W2], "absent", timeout=5,
                                     interval=0.05)
    assert changed and [w["url"] for w in after] == [W1]


def test_smg_draining_worker_wanted_back_is_added_once_gone(fake_smg):
    api.converge(client(fake_smg), [W2], "absent", wait=False)
    assert [w["draining"] for w in client(fake_smg).workers()] == [False, True]
    # Re-added at once, as a rollout does: smg refuses (409) until the drain is over.
    changed, _, after = api.converge(client(fake_smg), [W1, W2], "present",
                                     worker_api_key=KEY, timeout=5, interval=0.05)
    assert changed and [(w["url"], w["healthy"]) for w in after] == [(W1, True), (W2, True)]
    assert fake_smg.posts == [{"url": W2, "api_key": KEY}]
    # A draining worker is not removed a second time by exclusive.
    assert api.plan([{"id": "x", "url": W3, "healthy": False, "draining": True}], [W1],
                    "present", exclusive=True) == ([W1], [])


# Prefill/decode: each worker's type (and a prefill's bootstrap port) goes in the POST body,
# as both gateways take it in PD mode; a listed worker of another type or port is replaced.
P1 = {"url": W1, "worker_type": "prefill", "bootstrap_port": 8998}
D2 = {"url": W2, "worker_type": "decode"}


@pytest.fixture
def fake_pd():
    router = FakeRouter(reachable=[W1, W2, W3])
    yield router
    router.close()


def test_pd_workers_are_added_with_their_type_and_bootstrap_port(fake_pd):
    changed, _, after = api.converge(client(fake_pd), [P1, D2], "present", worker_api_key=KEY,
                                     exclusive=True, timeout=5, interval=0.05)
    assert changed
    assert sorted(fake_pd.posts, key=lambda b: b["url"]) == [
        {"url": W1, "api_key": KEY, "worker_type": "prefill", "bootstrap_port": 8998},
        {"url": W2, "api_key": KEY, "worker_type": "decode"}]
    assert [(w["url"], w["worker_type"], w["bootstrap_port"], w["healthy"]) for w in after] == [
        (W1, "prefill", 8998, True), (W2, "decode", None, True)]
    changed, before, after = api.converge(client(fake_pd), [P1, D2], "present",
                                          worker_api_key=KEY, exclusive=True, timeout=5)
    assert not changed and before == after


@pytest.mark.parametrize("listed, why", [
    ({"worker_type": "decode"}, "a prefill listed as decode"),
    ({"worker_type": "prefill", "bootstrap_port": 9000}, "another bootstrap port"),
    ({}, "a regular worker"),
])
def test_a_worker_of_the_wrong_kind_is_removed_and_added_as_wanted(fake_pd, listed, why):
    fake_pd.seed(W1, **listed)
    changed, _, after = api.converge(client(fake_pd), [P1], "present", worker_api_key=KEY,
                                     timeout=5, interval=0.05)
    assert changed, why
    assert [(w["url"], w["worker_type"], w["bootstrap_port"]) for w in after] == [
        (W1, "prefill", 8998)]
    assert fake_pd.posts == [{"url": W1, "api_key": KEY, "worker_type": "prefill",
                              "bootstrap_port": 8998}]


def test_absent_removes_a_pd_worker_by_url_whatever_its_type(fake_pd):
    fake_pd.seed(W1, worker_type="prefill", bootstrap_port=8998)
    fake_pd.seed(W2, worker_type="decode")
    changed, _, after = api.converge(client(fake_pd), [W2], "absent", timeout=5,
                                     interval=0.05)
    assert changed and [(w["url"], w["worker_type"]) for w in after] == [(W1, "prefill")]


@pytest.mark.parametrize("wanted, message", [
    ([{"url": W1, "worker_type": "encode"}], "worker_type 'encode' is not one of"),
    ([{"url": W2, "worker_type": "decode", "bootstrap_port": 8998}],
     "only a prefill worker has a bootstrap_port"),
    ([P1, {"url": W1 + "/", "worker_type": "decode"}], "is wanted twice"),
])
def test_bad_wanted_workers_are_refused_before_any_call(fake_pd, wanted, message):
    with pytest.raises(ValueError, match=message):
        api.converge(client(fake_pd), wanted, "present", worker_api_key=KEY)
    assert fake_pd.posts == []


def test_module_takes_typed_workers(fake_pd, monkeypatch, capsys):
    result = run_module(workers_module.main, {"router_url": fake_pd.url, "api_key": KEY, "timeout": 5,
                         "workers": [P1, D2], "exclusive": True}, monkeypatch, capsys)
    assert result["changed"], result
    assert [(w["url"], w["worker_type"]) for w in result["after"]] == [
        (W1, "prefill"), (W2, "decode")]
    result = run_module(workers_module.main, {"router_url": fake_pd.url, "api_key": KEY, "urls": [W1],
                         "workers": [D2]}, monkeypatch, capsys)
    assert result["failed"] and "mutually exclusive" in result["msg"]


def test_a_wrong_key_is_an_error_with_the_status(fake):
    with pytest.raises(api.RouterError, match="HTTP 401"):
        api.converge(client(fake, key="wrong"), [W3], "present")


def test_an_unreachable_router_is_an_error():
    with pytest.raises(api.RouterError, match="GET http://127.0.0.1:"):
        api.converge(api.Router(f"http://127.0.0.1:{free_port()}", KEY, 2), [W1], "present")


def test_module_drains_and_hides_the_key(fake, monkeypatch, capsys):
    result = run_module(workers_module.main, {"router_url": fake.url, "api_key": KEY, "urls": [W1],
                         "state": "absent", "timeout": 5}, monkeypatch, capsys)
    assert result["changed"] and [w["url"] for w in result["after"]] == [W2]
    assert KEY not in json.dumps(result)


def test_module_fails_with_the_message(fake, monkeypatch, capsys):
    result = run_module(workers_module.main, {"router_url": fake.url, "api_key": "wrong", "urls": [W1]},
                        monkeypatch, capsys)
    assert result["failed"] and "HTTP 401" in result["msg"]


# ---------------------------------------------------------------- launcher
def test_launcher_refuses_the_key_on_the_command_line():
    with pytest.raises(SystemExit, match="refusing --api-key"):
        launcher.split_argv(["--api-key-file", "k", "--worker-urls-file", "w", "--",
                             "--port", "1", "--api-key=secret"])
    with pytest.raises(SystemExit, match="usage"):
        launcher.split_argv(["--port", "1"])


def test_launcher_reads_files_and_starts_the_router_in_process(tmp_path, monkeypatch):
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "workers").write_text(f"# managed\n{W1}\n\n{W2}  # node 0\n")
    started = {}
    package = types.ModuleType("sglang_router")
    entry = types.ModuleType("sglang_router.launch_router")
    entry.parse_router_args = lambda flags: types.SimpleNamespace(flags=flags, api_key=None,
                                                                  worker_urls=[])
    entry.launch_router = lambda args: started.update(vars(args))
    monkeypatch.setitem(sys.modules, "sglang_router", package)
    monkeypatch.setitem(sys.modules, "sglang_router.launch_router", entry)
    launcher.main(["--api-key-file", str(tmp_path / "key"), "--worker-urls-file",
                   str(tmp_path / "workers"), "--", "--port", "30080"])
    assert started == {"flags": ["--port", "30080"], "api_key": KEY,
                       "worker_urls": [W1, W2]}


def fake_smg_entry(monkeypatch):
    """smg's launch_router module, faked: what the launcher starts it with lands in the
    returned dict."""
    started = {}
    entry = types.ModuleType("smg.launch_router")
    entry.parse_router_args = lambda flags: types.SimpleNamespace(flags=flags, api_key=None,
                                                                  worker_urls=[])
    entry.launch_router = lambda args: started.update(vars(args))
    monkeypatch.setitem(sys.modules, "smg", types.ModuleType("smg"))
    monkeypatch.setitem(sys.modules, "smg.launch_router", entry)
    return started


def test_launcher_starts_smg_when_asked(tmp_path, monkeypatch):
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "workers").write_text(f"{W1}\n")
    started = fake_smg_entry(monkeypatch)
    launcher.main(["--package", "smg", "--api-key-file", str(tmp_path / "key"),
                   "--worker-urls-file", str(tmp_path / "workers"), "--", "--port", "1"])
    assert started == {"flags": ["--port", "1"], "api_key": KEY, "worker_urls": [W1]}


@pytest.mark.parametrize("flag", ["--tenant-api-key=t:k", "--control-plane-api-keys",
                                  "--worker-urls"])
def test_launcher_refuses_smgs_other_key_flags(flag):
    with pytest.raises(SystemExit, match="refusing"):
        launcher.split_argv(["--package", "smg", "--api-key-file", "k",
                             "--worker-urls-file", "w", "--", flag, "x"])


def test_launcher_refuses_an_empty_key(tmp_path):
    (tmp_path / "key").write_text("\n")
    with pytest.raises(SystemExit, match="is empty"):
        launcher.read_key(str(tmp_path / "key"))


# ---------------------------------------------------------------- the real gateways
# Each runs only where its Python is given (see the docstring).
GATEWAY_PYTHONS = {"sglang_router": os.environ.get("SGLANG_ROUTER_PYTHON", ""),
                   "smg": os.environ.get("SMG_PYTHON", "")}


def _installed(package):
    python = GATEWAY_PYTHONS[package]
    return bool(python) and subprocess.run(
        [python, "-c", f"import {package}.launch_router"], capture_output=True).returncode == 0


real_router = pytest.mark.parametrize("real", [
    pytest.param(package, marks=pytest.mark.skipif(
        not _installed(package), reason=f"set {var} to a Python with {pin} installed"))
    for package, var, pin in (("sglang_router", "SGLANG_ROUTER_PYTHON", "sglang-router==0.3.2"),
                              ("smg", "SMG_PYTHON", "smg==1.13.0"))], indirect=True)


@pytest.fixture
def real(request, tmp_path):
    package = request.param
    sims = [Sim(["--model-path", "moonshotai/Kimi-K2-Thinking", "--reasoning-parser",
                 "kimi_k2", "--tool-call-parser", "kimi_k2", "--api-key", KEY], api_key=KEY)
            for _ in range(3)]
    for sim in sims:
        sim.wait_ready()
    urls = [f"http://127.0.0.1:{s.port}" for s in sims]
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "workers").write_text("\n".join(urls[:2]) + "\n")
    port = free_port()
    # The gateway's output is kept: a gateway that never gets ready fails naming why.
    log = tmp_path / f"{package}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [GATEWAY_PYTHONS[package], str(LAUNCHER), "--package", package,
             "--api-key-file", str(tmp_path / "key"),
             "--worker-urls-file", str(tmp_path / "workers"), "--", "--host", "127.0.0.1",
             "--port", str(port), "--prometheus-host", "127.0.0.1", "--prometheus-port",
             str(free_port()), "--health-check-interval-secs", "1",
             "--worker-startup-check-interval", "1", "--log-level", "warn"],
            env={**os.environ, "PYTHONPATH": str(SIM_SRC)},
            stdout=sink, stderr=subprocess.STDOUT)
    router = api.Router(f"http://127.0.0.1:{port}", KEY, 5)
    # Generous: CI runs the container suites beside the unit tests.
    deadline = time.monotonic() + 120
    while True:
        try:
            if len([w for w in router.workers() if w["healthy"]]) == 2:
                break
        except api.RouterError:
            pass
        tail = log.read_text(errors="replace")[-3000:]
        assert proc.poll() is None, f"the gateway exited:\n{tail}"
        assert time.monotonic() < deadline, f"the gateway never listed 2 healthy workers:\n{tail}"
        time.sleep(0.2)
    yield types.SimpleNamespace(proc=proc, router=router, urls=urls, package=package)
    proc.terminate()
    proc.wait(timeout=30)
    for sim in sims:
        sim.stop()


@real_router
def test_real_router_keeps_the_key_out_of_ps(real):
    cmdline = open(f"/proc/{real.proc.pid}/cmdline", "rb").read()
    assert KEY.encode() not in cmdline
    # Each retitles itself: smg::router, sglang::router.
    assert cmdline.startswith(b"smg::router" if real.package == "smg" else b"sglang::router")
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert KEY not in ps


@real_router
def test_real_router_is_ready_once_every_worker_is_healthy(real):
    status, body = real.router.call("GET", "/readiness")
    assert status == 200
    assert json.loads(body)["healthy_workers"] == 2
    # /health answers without a key; /workers needs it.
    assert api.Router(real.router.base_url, "", 5).call("GET", "/health")[0] == 200
    assert api.Router(real.router.base_url, "", 5).call("GET", "/workers")[0] == 401


@real_router
def test_real_router_drains_and_readds_workers(real):
    assert sorted(w["url"] for w in real.router.workers()) == sorted(real.urls[:2])
    changed, _, after = api.converge(real.router, [real.urls[0]], "absent", timeout=30,
                                     interval=0.2)
    assert changed and [w["url"] for w in after] == [real.urls[1]]
    changed, _, after = api.converge(real.router, real.urls, "present", worker_api_key=KEY,
                                     timeout=30, interval=0.2)
    assert changed and sorted(w["url"] for w in after) == sorted(real.urls)
    assert all(w["healthy"] for w in after)
    changed, _, _ = api.converge(real.router, real.urls, "present", worker_api_key=KEY,
                                 timeout=30, interval=0.2)
    assert not changed


@real_router
def test_real_router_readds_a_worker_it_is_still_draining(real):
    # A rollout drains without waiting, then wants the worker back: smg still lists it
    # (draining) and answers the POST with 409; the module waits the drain out.
    api.converge(real.router, [real.urls[0]], "absent", wait=False)
    changed, _, after = api.converge(real.router, real.urls[:2], "present",
                                     worker_api_key=KEY, timeout=30, interval=0.2)
    assert sorted((w["url"], w["healthy"]) for w in after) == [(u, True) for u in sorted(real.urls[:2])]


@real_router
def test_real_router_serves_chat_with_the_key_only(real):
    status, _ = real.router.call("POST", "/v1/chat/completions", {
        "model": "moonshotai/Kimi-K2-Thinking",
        "messages": [{"role": "user", "content": "What is 15% of 240?"}]})
    assert status == 200
    assert api.Router(real.router.base_url, "", 5).call(
        "POST", "/v1/chat/completions", {"model": "x", "messages": []})[0] == 401
