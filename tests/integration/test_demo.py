"""The demo: a simulated fleet converged by the real site playbook, then probed."""
import subprocess

import pytest

from runner import play, task_results

DEMO = ["kimi-demo-1", "kimi-demo-2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    up = play("tools/demo/up.yml", "demo", tmp_path_factory.mktemp("up"))
    assert up.status == "successful"
    site = play("playbooks/site.yml", "demo", tmp_path_factory.mktemp("site"))
    status = play("playbooks/status.yml", "demo", tmp_path_factory.mktemp("status"))
    connection = play("tools/testbed/check_connection.yml", "demo", tmp_path_factory.mktemp("ssh"))
    again = play("playbooks/serve.yml", "demo", tmp_path_factory.mktemp("again"))
    yield site, status, connection, again
    play("tools/demo/down.yml", "demo", tmp_path_factory.mktemp("down"))


def test_site_converges_and_verifies_every_demo_host(demo):
    site, *_ = demo
    assert site.status == "successful", site.stdout.read()
    assert sorted(site.stats["ok"]) == DEMO + ["localhost"]  # localhost writes the report
    assert not site.stats["failures"] and not site.stats["dark"]
    [report] = task_results(site, "runner_on_ok", "Show where the report is").values()
    assert report["msg"].startswith("PASSED: 2 of 2 hosts fit to take traffic")
    verdicts = task_results(site, "runner_on_ok", "Fail the host unless every check and the "
                                                  "GSM8K gate passed")
    assert sorted(verdicts) == DEMO
    assert "10/10 smoke checks, GSM8K 1.0" in verdicts["kimi-demo-1"]["msg"]


def test_every_endpoint_is_healthy_and_serves_its_model(demo):
    _, status, *_ = demo
    lines = task_results(status, "runner_on_ok", "Show the endpoint")
    assert "health=200 models=['moonshotai/Kimi-K2-Thinking']" in lines["kimi-demo-1"]["msg"]
    assert "health=200 models=['moonshotai/Kimi-K2-Instruct']" in lines["kimi-demo-2"]["msg"]


def test_each_variant_runs_with_its_own_flags(demo):
    """kimi-demo-1 serves Kimi-K2-Thinking (tp8 profile), kimi-demo-2 Instruct: the
    reasoning parser only on Thinking. (The fleet scenario checks multi-node Instruct.)"""
    flags = {host: " ".join(subprocess.run(
        ["podman", "exec", host, "cat", "/etc/systemd/system/sglang.service"], check=True,
        capture_output=True, text=True).stdout.replace("\\\n", " ").split()) for host in DEMO}
    for flag in ("--model-path moonshotai/Kimi-K2-Thinking", "--tp-size 8",
                 "--reasoning-parser kimi_k2", "--tool-call-parser kimi_k2",
                 "--trust-remote-code", "--enable-metrics", "--config /etc/sglang/secrets.yaml"):
        assert flag in flags["kimi-demo-1"], flags["kimi-demo-1"]
    for flag in ("--dp-size", "--enable-dp-attention", "--max-running-requests"):
        assert flag not in flags["kimi-demo-1"], flags["kimi-demo-1"]
    assert "--model-path moonshotai/Kimi-K2-Instruct" in flags["kimi-demo-2"]
    assert "--reasoning-parser" not in flags["kimi-demo-2"]


def test_the_demo_hosts_are_reached_over_ssh_with_pipelining(demo):
    _, _, connection, _ = demo
    assert connection.status == "successful", connection.stdout.read()
    assert sorted(task_results(connection, "runner_on_ok", "Assert the connection plugin is ssh, "
                                                           "pipelined")) == DEMO


# Actions whose plugin decides on the controller: they never reach the host.
CONTROLLER_ACTIONS = {"set_fact", "assert", "debug", "meta", "include_tasks", "include_role",
                      "validate_argument_spec", "sglang_service_launch"}


def test_a_no_op_serve_only_reads_each_host(demo):
    """Everything in place: each host gets its three reads (packages and account, the
    venv's record, the service's files and units) and nothing else; every task that would
    write, install or start is skipped on the controller."""
    *_, again = demo
    assert again.status == "successful", again.stdout.read()
    assert all(again.stats["changed"].get(host, 0) == 0 for host in DEMO), again.stats
    on_host = {host: [] for host in DEMO}
    for event in again.events:
        data = event.get("event_data", {})
        delegated = data.get("res", {}).get("_ansible_delegated_vars", {})
        if event["event"] == "runner_on_ok" and data["host"] in on_host \
                and data["task_action"].rsplit(".", 1)[-1] not in CONTROLLER_ACTIONS \
                and delegated.get("ansible_host") != "localhost":
            on_host[data["host"]].append(data["task"])
    assert on_host == {host: ["install | Read the installed packages and the service account",
                              "pinned_venv | Read what the venv was installed from",
                              "configure | Read the service's files and units"]
                       for host in DEMO}
