"""sglang-router: worker selection and argv (filter), the /workers API client (module),
and the launcher that keeps the API key out of argv.

The module is tested against a small fake router here (127.0.0.1 only). The tests marked
real_router run the real sglang-router 0.3.2 binary in front of simulator workers; they
are skipped unless SGLANG_ROUTER_PYTHON names a Python that has it installed:

    python3 -m venv /tmp/router-venv && /tmp/router-venv/bin/pip install sglang-router==0.3.2
    SGLANG_ROUTER_PYTHON=/tmp/router-venv/bin/python pytest tests/unit/test_sglang_router.py
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

from conftest import ROOT, load_file
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
            "extra_args": []}
    return {**base, **more}


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


# ---------------------------------------------------------------- fake router
class FakeRouter:
    """sglang-router 0.3.2's /workers API: async add (listed once healthy), async delete."""

    def __init__(self, reachable, delay=0.2):
        self.reachable = set(reachable)  # worker URLs whose health check would pass
        self.delay = delay
        self.workers = {}
        self.lock = threading.Lock()
        self.posts = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seed(self, url, healthy=True):
        self.workers[str(uuid.uuid4())] = {"url": url, "is_healthy": healthy}

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

                def add():
                    if body["url"] in fake.reachable and body.get("api_key") == KEY:
                        with fake.lock:
                            fake.workers[worker_id] = {"url": body["url"], "is_healthy": True}
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


def test_a_wrong_key_is_an_error_with_the_status(fake):
    with pytest.raises(api.RouterError, match="HTTP 401"):
        api.converge(client(fake, key="wrong"), [W3], "present")


def test_an_unreachable_router_is_an_error():
    with pytest.raises(api.RouterError, match="GET http://127.0.0.1:"):
        api.converge(api.Router(f"http://127.0.0.1:{free_port()}", KEY, 2), [W1], "present")


def run_module(args, monkeypatch, capsys):
    from ansible.module_utils import basic
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args})
                        .encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit):
        workers_module.main()
    return json.loads(capsys.readouterr().out)


def test_module_drains_and_hides_the_key(fake, monkeypatch, capsys):
    result = run_module({"router_url": fake.url, "api_key": KEY, "urls": [W1],
                         "state": "absent", "timeout": 5}, monkeypatch, capsys)
    assert result["changed"] and [w["url"] for w in result["after"]] == [W2]
    assert KEY not in json.dumps(result)


def test_module_fails_with_the_message(fake, monkeypatch, capsys):
    result = run_module({"router_url": fake.url, "api_key": "wrong", "urls": [W1]},
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


def test_launcher_refuses_an_empty_key(tmp_path):
    (tmp_path / "key").write_text("\n")
    with pytest.raises(SystemExit, match="is empty"):
        launcher.read_key(str(tmp_path / "key"))


# ---------------------------------------------------------------- the real sglang-router
ROUTER_PYTHON = os.environ.get("SGLANG_ROUTER_PYTHON", "")
real_router = pytest.mark.skipif(
    not ROUTER_PYTHON or subprocess.run(
        [ROUTER_PYTHON or "false", "-c", "import sglang_router.launch_router"],
        capture_output=True).returncode != 0,
    reason="set SGLANG_ROUTER_PYTHON to a Python with sglang-router==0.3.2 installed")


@pytest.fixture
def real(tmp_path):
    sims = [Sim(["--model-path", "moonshotai/Kimi-K2-Thinking", "--reasoning-parser",
                 "kimi_k2", "--tool-call-parser", "kimi_k2", "--api-key", KEY], api_key=KEY)
            for _ in range(3)]
    for sim in sims:
        sim.wait_ready()
    urls = [f"http://127.0.0.1:{s.port}" for s in sims]
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "workers").write_text("\n".join(urls[:2]) + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [ROUTER_PYTHON, str(LAUNCHER), "--api-key-file", str(tmp_path / "key"),
         "--worker-urls-file", str(tmp_path / "workers"), "--", "--host", "127.0.0.1",
         "--port", str(port), "--prometheus-host", "127.0.0.1", "--prometheus-port",
         str(free_port()), "--health-check-interval-secs", "1",
         "--worker-startup-check-interval", "1", "--log-level", "warn"],
        env={**os.environ, "PYTHONPATH": str(SIM_SRC)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    router = api.Router(f"http://127.0.0.1:{port}", KEY, 5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if len([w for w in router.workers() if w["healthy"]]) == 2:
                break
        except api.RouterError:
            pass
        time.sleep(0.2)
    yield types.SimpleNamespace(proc=proc, router=router, urls=urls)
    proc.terminate()
    proc.wait(timeout=30)
    for sim in sims:
        sim.stop()


@real_router
def test_real_router_keeps_the_key_out_of_ps(real):
    cmdline = open(f"/proc/{real.proc.pid}/cmdline", "rb").read()
    assert KEY.encode() not in cmdline
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert KEY not in ps


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
def test_real_router_serves_chat_with_the_key_only(real):
    status, _ = real.router.call("POST", "/v1/chat/completions", {
        "model": "moonshotai/Kimi-K2-Thinking",
        "messages": [{"role": "user", "content": "What is 15% of 240?"}]})
    assert status == 200
    assert api.Router(real.router.base_url, "", 5).call(
        "POST", "/v1/chat/completions", {"model": "x", "messages": []})[0] == 401
