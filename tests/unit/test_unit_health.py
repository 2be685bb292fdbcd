"""The health gate's poll (plugins/modules/unit_health.py) and the failure hook
(roles/sglang_service/files/kimi-k2-unit-failed.py): a server that dies while the gate
waits is reported at the next poll, named by its unit's state (issue 14, fault 5)."""
from __future__ import annotations

import http.server
import json
import threading

import pytest

from ansible_collections.kimi_k2.sglang.plugins.modules import unit_health as mod
from conftest import ROOT, load_file

RUNNING = {"ActiveState": "active", "SubState": "running", "Result": "success",
           "NRestarts": 0, "ExecMainCode": "0", "ExecMainStatus": "0"}


def test_show_output_parses_with_an_integer_restart_count():
    text = ("ActiveState=activating\nSubState=auto-restart\nResult=exit-code\nNRestarts=2\n"
            "ExecMainCode=1\nExecMainStatus=1\n")
    assert mod.parse_show(text) == {"ActiveState": "activating", "SubState": "auto-restart",
                                    "Result": "exit-code", "NRestarts": 2,
                                    "ExecMainCode": "1", "ExecMainStatus": "1"}


def test_a_running_or_starting_unit_is_no_failure():
    assert mod.judge_unit(RUNNING, 0) == ""
    assert mod.judge_unit({**RUNNING, "ActiveState": "activating", "SubState": "start"}, 0) == ""
    # Restarts from before the gate began do not count.
    assert mod.judge_unit({**RUNNING, "NRestarts": 4}, 4) == ""


@pytest.mark.parametrize("state,words", [
    ({"ActiveState": "failed", "SubState": "failed", "Result": "start-limit-hit"},
     ["the unit failed", "failed (failed), result start-limit-hit"]),
    ({"ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code",
      "ExecMainCode": "1", "ExecMainStatus": "1"},
     ["waits to restart it", "result exit-code", "exit code 1"]),
    ({"ActiveState": "inactive", "SubState": "dead", "Result": "success"}, ["the unit stopped"]),
    ({"NRestarts": 1}, ["restarted the unit 1 time(s) since the start"]),
    ({"ExecMainCode": "2", "ExecMainStatus": "9", "ActiveState": "failed", "Result": "signal"},
     ["signal 9"]),
])
def test_a_failed_stopped_or_restarted_unit_is_named(state, words):
    reason = mod.judge_unit({**RUNNING, **state}, 0)
    for word in words:
        assert word in reason, reason


class _Health(http.server.BaseHTTPRequestHandler):
    answers: list = []

    def do_GET(self):  # noqa: N802 - http.server's name
        status, body = self.answers.pop(0)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def health_url():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/health", _Health.answers
    server.shutdown()


def test_the_url_and_its_json_field_decide_health(health_url):
    url, answers = health_url
    answers[:] = [(200, {}), (503, {}), (200, {"healthy_workers": 1}), (200, {"healthy_workers": 2})]
    assert mod.healthy(mod.ask(url, 5), "", 0)
    assert not mod.healthy(mod.ask(url, 5), "", 0)
    assert not mod.healthy(mod.ask(url, 5), "healthy_workers", 2)
    assert mod.healthy(mod.ask(url, 5), "healthy_workers", 2)
    closed = mod.ask("http://127.0.0.1:9/health", 1)
    assert closed["status"] == -1 and "Request failed" in closed["msg"]


def _hook():
    return load_file("kimi_k2_unit_failed", ROOT / "roles/sglang_service/files/kimi-k2-unit-failed.py")


def test_the_failure_hook_records_the_result_and_counts_failures(tmp_path, monkeypatch):
    hook = _hook()
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    monkeypatch.setattr(hook, "unit_state", lambda unit: {
        "Result": "start-limit-hit", "ExecMainCode": "1", "ExecMainStatus": "1",
        "NRestarts": "2", "InvocationID": "abc"})
    assert hook.main(["sglang.service"]) == 0
    assert hook.main(["sglang.service"]) == 0
    record = json.loads((tmp_path / "sglang.service.json").read_text())
    assert record["result"] == "start-limit-hit" and record["ended_with"] == "exit code 1"
    assert record["restarts"] == 2 and record["count"] == 2
    assert "result start-limit-hit, last process ended with exit code 1" in hook.line(record)
    assert hook.main([]) == 2
