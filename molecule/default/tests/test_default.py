"""End state of the default scenario's two hosts (see molecule.yml for their groups)."""
from pathlib import Path

import pytest
import yaml

DEMO_VARS = Path(__file__).parents[3] / "inventories" / "demo" / "group_vars"
API_KEY = yaml.safe_load((DEMO_VARS / "all" / "sglang_service.yml").read_text())[
    "sglang_service_api_key"]
UNIT = "/etc/systemd/system/sglang.service"

# Flags each host's ExecStart must carry, and flags it must not.
EXPECTED = {
    "kimi-test-1": (["--model-path moonshotai/Kimi-K2-Thinking", "--tp-size 8",
                     "--reasoning-parser kimi_k2", "--tool-call-parser kimi_k2",
                     "--trust-remote-code", "--enable-metrics",
                     "--config /etc/sglang/secrets.yaml"],
                    ["--dp-size", "--enable-dp-attention", "--max-running-requests"]),
    "kimi-test-2": (["--model-path moonshotai/Kimi-K2-Instruct", "--tp-size 8", "--dp-size 4",
                     "--enable-dp-attention", "--tool-call-parser kimi_k2",
                     "--nnodes 2 --node-rank 0 --dist-init-addr kimi-test-2:50000",
                     "--max-running-requests 64"],
                    ["--reasoning-parser", "--ep-size"]),
    # Rank 1 of the same server: same command but its rank; the side effect changed only
    # kimi-test-2's variables.
    "kimi-test-3": (["--model-path moonshotai/Kimi-K2-Instruct", "--tp-size 8", "--dp-size 4",
                     "--nnodes 2 --node-rank 1 --dist-init-addr kimi-test-2:50000"],
                    ["--reasoning-parser", "--max-running-requests"]),
}
RANK = {"kimi-test-1": 0, "kimi-test-2": 0, "kimi-test-3": 1}


def _name(host):
    return host.backend.get_hostname()


def _journal(host):
    return host.run("journalctl --unit sglang.service --lines 30 --no-pager").stdout


def test_service_account_exists(host):
    user = host.user("sglang")
    assert user.group == "sglang"
    assert user.shell == "/usr/sbin/nologin"


def test_unit_execstart_carries_the_inventorys_flags(host):
    flags = " ".join(host.file(UNIT).content_string.replace("\\\n", " ").split())
    wanted, unwanted = EXPECTED[_name(host)]
    for flag in wanted:
        assert flag in flags
    for flag in unwanted:
        assert flag not in flags
    assert "-m sglang_sim.launch_server" in flags


@pytest.mark.parametrize("path,owner,group,mode", [
    ("/etc/sglang/sglang.env", "root", "root", 0o600),
    ("/etc/sglang/secrets.yaml", "root", "sglang", 0o640),
    ("/etc/sglang", "root", "sglang", 0o750),
])
def test_secret_files_are_locked_down(host, path, owner, group, mode):
    f = host.file(path)
    assert (f.user, f.group, f.mode) == (owner, group, mode)


def test_api_key_stays_out_of_unit_and_process_list(host):
    assert API_KEY not in host.file(UNIT).content_string
    assert API_KEY not in host.run("ps -eo args").stdout
    assert API_KEY in host.file("/etc/sglang/secrets.yaml").content_string


def test_api_key_is_in_no_journal_though_the_server_logs_it(host):
    # SGLang 0.5.6.post1 logs server_args, api_key in clear, at every start, and so does
    # its simulator: the role's launcher masks it before it reaches the journal.
    journal = host.run("journalctl --no-pager --output cat").stdout
    assert "server_args=ServerArgs(" in journal  # the line that would hold the key...
    assert "api_key='<redacted>'" in journal      # ...is there, masked
    assert API_KEY not in journal


def test_api_key_is_in_no_report():
    reports = Path(__file__).parents[3] / "reports" / "inventory"
    files = [f for f in reports.rglob("*") if f.is_file()]
    assert files, "playbooks/verify.yml wrote no report"
    for report in files:
        assert API_KEY not in report.read_text(errors="replace"), report


def test_service_is_enabled_and_running(host):
    service = host.service("sglang.service")
    assert service.is_enabled, _journal(host)
    assert service.is_running, _journal(host)
    assert service.systemd_properties["User"] == "sglang"


def test_health_answers_200(host):
    code = host.check_output(
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:30000/health")
    assert code == "200", _journal(host)


def test_models_needs_the_key_and_lists_the_served_name(host):
    url = "http://127.0.0.1:30000/v1/models"
    denied = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {url}")
    if RANK[_name(host)] >= 1:  # only rank 0 serves the API
        assert denied == "404"
        return
    assert denied == "401"
    body = host.check_output(f"curl -s -H 'Authorization: Bearer {API_KEY}' {url}")
    ids = [m["id"] for m in yaml.safe_load(body)["data"]]
    model = EXPECTED[_name(host)][0][0].split()[1]
    assert ids == [model]


def test_verify_wrote_a_passing_fleet_report(host):
    reports = sorted((Path(__file__).parents[3] / "reports" / "inventory").glob("*/report.json"))
    assert reports, "playbooks/verify.yml wrote no report"
    report = yaml.safe_load(reports[-1].read_text())
    row = next(h for h in report["hosts"] if h["host"] == _name(host))
    assert row["passed"] and row["health"], row["problems"]
    assert row["rank"] == RANK[_name(host)]
    if row["rank"] >= 1:  # ranks >= 1 get the health check only
        assert [c["name"] for c in row["smoke"]] == ["health"] and row["gsm8k"] is None
        return
    assert row["smoke_passed"] == row["smoke_total"] >= 9
    assert row["gsm8k"]["questions"] == 200 and row["gsm8k"]["accuracy"] == 1.0
