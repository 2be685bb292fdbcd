"""The demo: a simulated fleet converged by the real site playbook, then probed."""
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
    yield site, status, connection
    play("tools/demo/down.yml", "demo", tmp_path_factory.mktemp("down"))


def test_site_converges_and_verifies_every_demo_host(demo):
    site, _, _ = demo
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
    _, status, _ = demo
    lines = task_results(status, "runner_on_ok", "Show the endpoint")
    assert "health=200 models=['moonshotai/Kimi-K2-Thinking']" in lines["kimi-demo-1"]["msg"]
    assert "health=200 models=['moonshotai/Kimi-K2-Instruct']" in lines["kimi-demo-2"]["msg"]


def test_the_demo_hosts_are_reached_over_ssh_with_pipelining(demo):
    *_, connection = demo
    assert connection.status == "successful", connection.stdout.read()
    assert sorted(task_results(connection, "runner_on_ok", "Assert the connection plugin is ssh, "
                                                           "pipelined")) == DEMO
