"""The simulator's /metrics (tools/sglang_sim/src/sglang_sim/metrics.py) against the pinned
SGLang's own metrics code: every series the simulator exposes is registered by SGLang
0.5.6.post1 under the same name, type and help text, by the collector whose labels the
simulator gives it, with the same default buckets; and the scheduler's labels are the
ones SGLang sets. Reads the code of the SGLang venv (SGLANG_PYTHON) without importing it.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

from sglang_sim import metrics as sim  # tools/sglang_sim/src, on the path (pytest.ini)
from sglang_sim.server import SIMULATED_VERSION

SGLANG_PYTHON = os.environ.get("SGLANG_PYTHON", str(ROOT / ".venv-sglang" / "bin" / "python"))
KINDS = {"Gauge": "gauge", "Counter": "counter", "Histogram": "histogram"}
COLLECTORS = {"SchedulerMetricsCollector": "scheduler", "TokenizerMetricsCollector": "tokenizer"}


@pytest.fixture(scope="module")
def sglang_srt() -> Path:
    if not Path(SGLANG_PYTHON).exists():
        pytest.fail(f"no SGLang venv at {SGLANG_PYTHON}: run `make conformance`")
    out = subprocess.run([SGLANG_PYTHON, "-c", (
        "import importlib.util, importlib.metadata, json; "
        "print(json.dumps([importlib.util.find_spec('sglang').submodule_search_locations[0], "
        "importlib.metadata.version('sglang')]))")], capture_output=True, text=True, check=True)
    package, version = json.loads(out.stdout)
    assert version == SIMULATED_VERSION, "the simulator simulates another version"
    return Path(package) / "srt"


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def registered(collector_py: Path) -> dict[str, tuple[str, str, str, tuple | None]]:
    """name -> (type, help, collector, default buckets or None) of every metric SGLang's
    collectors construct with a literal name."""
    tree = ast.parse(collector_py.read_text())
    out = {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        literals = {}  # bucket_<x> = [ ... ] defaults inside the class
        for node in ast.walk(cls):
            if (isinstance(node, ast.Assign) and isinstance(node.value, ast.List)
                    and isinstance(node.targets[0], ast.Name)):
                try:
                    literals[node.targets[0].id] = tuple(ast.literal_eval(node.value))
                except ValueError:
                    pass
        for node in ast.walk(cls):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in KINDS):
                continue
            name, doc = _keyword(node, "name"), _keyword(node, "documentation")
            if not (isinstance(name, ast.Constant) and isinstance(doc, ast.Constant)):
                continue
            buckets = _keyword(node, "buckets")
            default = literals.get(buckets.id) if isinstance(buckets, ast.Name) else None
            out[name.value] = (KINDS[node.func.id], doc.value,
                               COLLECTORS.get(cls.name, cls.name), default)
    return out


def test_every_simulated_metric_is_sglangs_with_its_type_help_and_collector(sglang_srt):
    code = registered(sglang_srt / "metrics" / "collector.py")
    assert len(code) > 50, "found too few metrics: has collector.py changed shape?"
    for name, (kind, doc, source) in sim.METRICS.items():
        assert name in code, f"{name}: SGLang 0.5.6.post1 has no such metric"
        assert code[name][:3] == (kind, doc, source), name


def test_histogram_buckets_are_sglangs_defaults(sglang_srt):
    code = registered(sglang_srt / "metrics" / "collector.py")
    for name, buckets in sim.BUCKETS.items():
        assert code[name][3] == tuple(buckets), name


def test_the_issue_s_metrics_are_simulated():
    """TTFT, ITL and e2e histograms, token counters, running and queued requests, token
    usage and cache hit rate: what the rules and dashboards read."""
    wanted = {"sglang:time_to_first_token_seconds", "sglang:inter_token_latency_seconds",
              "sglang:e2e_request_latency_seconds", "sglang:prompt_tokens_total",
              "sglang:generation_tokens_total", "sglang:num_requests_total",
              "sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
              "sglang:cache_hit_rate"}
    assert wanted <= set(sim.METRICS)


def test_scheduler_labels_are_sglangs(sglang_srt):
    source = (sglang_srt / "managers" / "scheduler_metrics_mixin.py").read_text()
    tree = ast.parse(source)
    keys = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and getattr(node.targets[0], "id", "") == "labels"):
            keys |= {k.value for k in node.value.keys}
        if (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
                and getattr(node.value, "id", "") == "labels"):
            keys.add(node.slice.value)
    args = type("Args", (), {"served_model_name": "m", "model_path": "m", "tensor_parallel_size": 8,
                             "data_parallel_size": 4, "enable_dp_attention": True,
                             "enable_metrics_for_all_schedulers": True})
    assert set(sim._schedulers(args)[0]) == keys == {"model_name", "engine_type", "tp_rank",
                                                     "pp_rank", "dp_rank"}
    gate = (sglang_srt / "managers" / "scheduler.py").read_text()
    assert "return self.attn_tp_rank == 0 or self.enable_metrics_for_all_schedulers" in gate
