"""The monitoring rules and Prometheus configuration (plugins/filter/sglang_monitoring.py),
checked by the real promtool of Debian 12's prometheus package (2.42; `make unit` unpacks
it into build/prometheus): `promtool check rules`, `promtool check config`, and
`promtool test rules` with the cases of tests/unit/promtool/sglang_rules_test.yml, each
alert firing and not firing.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_monitoring as mon

from conftest import ROOT

PROMTOOL = ROOT / "build" / "prometheus" / "usr" / "bin" / "promtool"
CASES = ROOT / "tests" / "unit" / "promtool" / "sglang_rules_test.yml"

# Short windows, as a test inventory sets them; the cases in CASES assume these.
SETTINGS = {
    "sglang_monitoring_rate_window": 60,
    "sglang_monitoring_down_for": 60,
    "sglang_monitoring_alert_for": 120,
    "sglang_monitoring_latency_for": 120,
    "sglang_monitoring_queue_threshold": 10,
    "sglang_monitoring_token_usage_ratio": 0.95,
    "sglang_monitoring_gpu_temperature_celsius": 85,
    "sglang_monitoring_scrape_interval": 5,
    "sglang_monitoring_evaluation_interval": 5,
    "sglang_monitoring_objectives": {
        "default": {"ttft_p95_seconds": 2, "itl_p95_seconds": 0.1},
        "g1": {"ttft_p95_seconds": 1},
        "g2": {"itl_p95_seconds": 0.5},
    },
}
REPORT = {"hosts": [
    {"host": "gate-1", "group": "gate-1", "gsm8k": {"accuracy": 0.5, "threshold": 0.93}},
    {"host": "gate-2", "group": "gate-2", "gsm8k": {"accuracy": 0.95, "threshold": 0.93}},
    {"host": "router-1", "group": "router:router-1", "gsm8k": None},
]}


def promtool(*args: str, cwd=None) -> subprocess.CompletedProcess:
    assert PROMTOOL.exists(), f"{PROMTOOL} is missing: make {PROMTOOL.relative_to(ROOT)}"
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def rules_dir(tmp_path):
    rules = mon.sglang_monitoring_rules(SETTINGS, ["g1", "g2", "g3", "g4"])
    (tmp_path / "sglang.rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    gsm8k = mon.sglang_monitoring_gsm8k_rules(REPORT)
    (tmp_path / "gsm8k.rules.yml").write_text(yaml.safe_dump(gsm8k, sort_keys=False))
    shutil.copy(CASES, tmp_path / CASES.name)
    return tmp_path


def test_promtool_is_debian_12s_prometheus():
    result = promtool("--version")
    assert "2.42.0" in result.stdout + result.stderr


def test_rules_pass_promtool_check(rules_dir):
    result = promtool("check", "rules", "sglang.rules.yml", "gsm8k.rules.yml", cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests(rules_dir):
    result = promtool("test", "rules", CASES.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not():
    cases = yaml.safe_load(CASES.read_text())["tests"]
    fired, quiet = set(), set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for group in mon.sglang_monitoring_rules(SETTINGS, ["g1"])["groups"]
              for rule in group["rules"] if "alert" in rule}
    assert alerts - fired == set(), "alerts never seen firing"
    # GSM8K's quiet case is gate-2, in the same check as gate-1's alert (exp_alerts is exact).
    assert alerts - quiet - {"SGLangGSM8KBelowThreshold"} == set(), "alerts never seen quiet"


def test_a_broken_case_fails_promtool(rules_dir):
    """The cases can fail: a latency objective raised above the measured p95 is quiet."""
    settings = {**SETTINGS, "sglang_monitoring_objectives": {
        "default": {"ttft_p95_seconds": 5, "itl_p95_seconds": 5}}}
    rules = mon.sglang_monitoring_rules(settings, ["g1", "g2", "g3", "g4"])
    (rules_dir / "sglang.rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    result = promtool("test", "rules", CASES.name, cwd=rules_dir)
    assert result.returncode != 0
    assert "SGLangTTFTAboveObjective" in result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check(rules_dir):
    config_dir = rules_dir / "etc"
    (config_dir / "rules").mkdir(parents=True)
    (config_dir / "targets").mkdir()
    shutil.copy(rules_dir / "sglang.rules.yml", config_dir / "rules" / "sglang.yml")
    for job in mon.JOBS:
        (config_dir / "targets" / f"{job}.json").write_text(json.dumps(
            [{"targets": ["127.0.0.1:30000"], "labels": {"deployment_group": "g1"}}]))
    config = mon.sglang_monitoring_prometheus_config(SETTINGS, str(config_dir),
                                                     ["127.0.0.1:9093"])
    (config_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(config_dir / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["job_name"] for c in config["scrape_configs"]] == list(mon.JOBS)
