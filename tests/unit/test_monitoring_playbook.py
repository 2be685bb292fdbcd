"""playbooks/monitoring.yml on the demo inventory, files-only (no monitoring host): it
connects to nothing, writes the targets, rules, prometheus.yml and dashboards to the
report directory, and refuses bad settings on the controller, naming the variable,
before any play reaches a monitoring host.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_monitoring_rules import promtool


def run(tmp_path, **extra) -> subprocess.CompletedProcess:
    variables = {"sglang_monitoring_reports_dir": str(tmp_path), **extra}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "inventories/demo", "playbooks/monitoring.yml",
         "-e", json.dumps(variables)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})


def test_files_only_writes_targets_rules_config_and_dashboards(tmp_path):
    # Two verify reports and a benchmark's (suffixed): the newest verify report counts.
    for stamp, accuracy in (("20260101T000000Z", 0.5), ("20260102T000000Z", 0.97),
                            ("20260103T000000Z-bench", 0.1)):
        (tmp_path / "demo" / stamp).mkdir(parents=True)
        (tmp_path / "demo" / stamp / "report.json").write_text(json.dumps({"hosts": [
            {"host": "kimi-demo-1", "group": "kimi-demo-1",
             "gsm8k": {"accuracy": accuracy, "threshold": 0.93}}]}))
    result = run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    out = tmp_path / "demo" / "monitoring"
    ranks = json.loads((out / "targets" / "sglang_ranks.json").read_text())
    assert {t["labels"]["host"] for t in ranks} == {"kimi-demo-1", "kimi-demo-2"}
    assert json.loads((out / "targets" / "sglang_routers.json").read_text()) == []
    check = promtool("check", "rules", str(out / "rules" / "sglang.yml"),
                     str(out / "rules" / "gsm8k.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    gsm8k = yaml.safe_load((out / "rules" / "gsm8k.yml").read_text())["groups"][0]["rules"]
    assert [(r["record"], r["expr"]) for r in gsm8k] == [
        ("sglang_gsm8k_accuracy", "vector(0.97)"), ("sglang_gsm8k_threshold", "vector(0.93)")]
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/sglang/rules/*.yml"]
    assert {p.name for p in (out / "dashboards").iterdir()} == {
        "sglang-fleet.json", "sglang-server.json", "sglang-router.json", "sglang-gpus.json"}
    assert json.loads((out / "dashboards" / "sglang-fleet.json").read_text())["title"] == \
        "SGLang fleet overview (demo)"


@pytest.mark.parametrize("extra, words", [
    ({"sglang_monitoring_objectives": {"default": {"ttft_p95_seconds": -1,
                                                   "itl_p95_seconds": 0.1}}},
     "sglang_monitoring_objectives.default.ttft_p95_seconds is -1: set a positive number"),
    ({"sglang_monitoring_host": "prometheus-1"},
     "sglang_monitoring_host is 'prometheus-1', which is not a host of this inventory"),
    ({"sglang_monitoring_down_for": -5}, "sglang_monitoring_down_for is -5"),
])
def test_bad_settings_are_refused_on_the_controller(tmp_path, extra, words):
    result = run(tmp_path, **extra)
    assert result.returncode != 0
    assert words in result.stdout, result.stdout[-3000:]
    assert "Give the monitoring host" not in result.stdout.split(words)[0]
    assert not (tmp_path / "demo" / "monitoring").exists()  # nothing written anywhere
