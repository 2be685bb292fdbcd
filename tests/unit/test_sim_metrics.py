"""The simulator's /metrics (tools/sglang_sim/src/sglang_sim/metrics.py): valid exposition
text (promtool check metrics, Debian 12's promtool), requests counted into SGLang's
histograms, and the schedulers that report with and without
--enable-metrics-for-all-schedulers. Names, types and help against SGLang's own code:
tests/conformance/test_sim_metrics.py.
"""
from __future__ import annotations

import argparse
import subprocess

from sglang_sim import metrics as sim

from test_monitoring_rules import PROMTOOL


def _args(**more) -> argparse.Namespace:
    base = {"served_model_name": "kimi", "model_path": "moonshotai/Kimi-K2-Instruct",
            "tensor_parallel_size": 8, "data_parallel_size": 1, "enable_dp_attention": False,
            "enable_metrics_for_all_schedulers": False}
    return argparse.Namespace(**{**base, **more})


def _series(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_exposition_passes_promtool_check_metrics():
    metrics = sim.Metrics()
    metrics.observe(20, 100, ttft=0.3, itl=0.02)
    text = sim.render(_args(), metrics, running=3)
    result = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, text=True,
                            capture_output=True, timeout=60)
    # SGLang's own names break one lint rule (a colon is meant for recording rules): all else
    # must pass.
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line and "metric names should not contain ':'" not in line]
    assert problems == []
    assert "# TYPE sglang:prompt_tokens_total counter" in text


def test_a_request_lands_in_the_latency_histograms():
    metrics = sim.Metrics()
    metrics.observe(20, 101, ttft=0.3, itl=0.02)
    text = sim.render(_args(), metrics, running=0)
    assert 'sglang:time_to_first_token_seconds_bucket{model_name="kimi",le="0.2"} 0.0' in text
    assert 'sglang:time_to_first_token_seconds_bucket{model_name="kimi",le="0.4"} 1.0' in text
    assert 'sglang:inter_token_latency_seconds_count{model_name="kimi"} 100.0' in text
    assert 'sglang:e2e_request_latency_seconds_bucket{model_name="kimi",le="4.0"} 1.0' in text
    assert 'sglang:generation_tokens_total{model_name="kimi"} 101.0' in text


def test_without_dp_attention_tp_rank_0_reports():
    text = sim.render(_args(), sim.Metrics(), running=2)
    assert _series(text, "sglang:num_running_reqs") == [
        'sglang:num_running_reqs{model_name="kimi",engine_type="unified",tp_rank="0",'
        'pp_rank="0"} 2.0']


def test_dp_attention_reports_every_scheduler_only_with_the_flag():
    one = sim.render(_args(data_parallel_size=4, enable_dp_attention=True), sim.Metrics(), 4)
    every = sim.render(_args(data_parallel_size=4, enable_dp_attention=True,
                             enable_metrics_for_all_schedulers=True), sim.Metrics(), 4)
    assert len(_series(one, "sglang:num_running_reqs")) == 4  # attention-TP rank 0 of each DP
    assert len(_series(every, "sglang:num_running_reqs")) == 8
    assert 'dp_rank="3"' in every and 'tp_rank="7"' in every
