"""Every dashboard panel's PromQL, evaluated by a real Prometheus (Debian 12's 2.42,
unpacked by `make unit` into build/prometheus) that scrapes, through the targets and
rules the role writes: a simulated two-node dp-attention group and a one-node server
(rank 1 serves only /health), the real sglang-router 0.3.2 in front of them (its venv:
build/router-venv) and a DCGM exporter stand-in (the test bed has no GPU). Every query
must return series; every target must be up. The fleet overview is then drawn as a PNG
by tools/fleet_overview_png.py (MONITORING_PNG=<path> keeps it, MONITORING_SOAK=<seconds>
of traffic first: the README's picture, docs/fleet-overview.png, is MONITORING_SOAK=120).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_monitoring as mon

from conftest import ROOT, load_file
from sim_process import SIM_SRC, Sim, free_port

PROMETHEUS = ROOT / "build" / "prometheus" / "usr" / "bin" / "prometheus"
ROUTER_PYTHON = ROOT / "build" / "router-venv" / "bin" / "python"
LAUNCHER = ROOT / "roles" / "sglang_router" / "files" / "sglang-router-launch.py"
KEY = "monitoring-test-key"
SETTINGS = {
    "sglang_monitoring_rate_window": 30, "sglang_monitoring_down_for": 5,
    "sglang_monitoring_alert_for": 5, "sglang_monitoring_latency_for": 5,
    "sglang_monitoring_queue_threshold": 10, "sglang_monitoring_token_usage_ratio": 0.95,
    "sglang_monitoring_gpu_temperature_celsius": 85,
    "sglang_monitoring_scrape_interval": 1, "sglang_monitoring_evaluation_interval": 1,
    "sglang_monitoring_objectives": {"default": {"ttft_p95_seconds": 5, "itl_p95_seconds": 1}},
}
# What dcgm-exporter's default counters publish for one GPU (names and labels as its
# documentation shows them); the values are made up: a STAND-IN, there is no GPU here.
DCGM_TEXT = "".join(
    f'# TYPE {name} gauge\n{name}{{gpu="{gpu}",UUID="GPU-0000000{gpu}",device="nvidia{gpu}",'
    f'modelName="NVIDIA H200",Hostname="gpu-1"}} {value}\n'
    for name, value in (("DCGM_FI_DEV_GPU_UTIL", 87), ("DCGM_FI_DEV_FB_USED", 130000),
                        ("DCGM_FI_DEV_GPU_TEMP", 61), ("DCGM_FI_DEV_POWER_USAGE", 612.5),
                        ("DCGM_FI_DEV_XID_ERRORS", 0))
    for gpu in (0, 1))


class _Dcgm(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = DCGM_TEXT.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def query(base: str, expr: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def returns_series(base: str, expr: str) -> list:
    """The query's series; an error or an empty answer fails."""
    try:
        result = query(base, expr)
    except urllib.error.HTTPError as error:  # a query Prometheus cannot parse: 400
        raise AssertionError(f"{expr}: {error.read().decode()}") from None
    assert result, f"{expr}: no series"
    return result


def _endpoint(group, rank, nnodes, port, metrics=True):
    return {"sglang_service_endpoint": {
        "cluster_url": f"http://127.0.0.1:{port}", "variant": "instruct", "group": group,
        "rank": rank, "nnodes": nnodes, "metrics": metrics, "sglang_version": "0.5.6.post1"}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for path, how in ((PROMETHEUS, "make build/prometheus/usr/bin/promtool"),
                      (ROUTER_PYTHON, "make build/router-venv/.installed")):
        assert path.exists(), f"{path} is missing: {how}"
    tmp = tmp_path_factory.mktemp("monitoring")
    env = {"SGLANG_SIM_TTFT_MS": "40", "SGLANG_SIM_ITL_MS": "8"}
    dist = f"127.0.0.1:{free_port()}"
    pair = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "8", "--dp-size", "4",
            "--enable-dp-attention", "--enable-metrics", "--enable-metrics-for-all-schedulers",
            "--nnodes", "2", "--dist-init-addr", dist, "--api-key", KEY]
    sims = {"pair-0": Sim([*pair, "--node-rank", "0"], env, KEY),
            "pair-1": Sim([*pair, "--node-rank", "1"], env, KEY),
            "solo": Sim(["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "8",
                         "--enable-metrics", "--api-key", KEY], env, KEY)}
    for sim in sims.values():
        sim.wait_ready()
    dcgm = ThreadingHTTPServer(("127.0.0.1", 0), _Dcgm)
    threading.Thread(target=dcgm.serve_forever, daemon=True).start()
    (tmp / "key").write_text(KEY + "\n")
    workers = [f"http://127.0.0.1:{sims[n].port}" for n in ("pair-0", "solo")]
    (tmp / "workers").write_text("\n".join(workers) + "\n")
    router_port, router_metrics = free_port(), free_port()
    router = subprocess.Popen(
        [str(ROUTER_PYTHON), str(LAUNCHER), "--api-key-file", str(tmp / "key"),
         "--worker-urls-file", str(tmp / "workers"), "--", "--host", "127.0.0.1",
         "--port", str(router_port), "--prometheus-host", "127.0.0.1", "--prometheus-port",
         str(router_metrics), "--health-check-interval-secs", "1",
         "--worker-startup-check-interval", "1", "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hostvars = {"pair-0": {**_endpoint("pair", 0, 2, sims["pair-0"].port),
                           "nvidia_driver_dcgm_exporter_enabled": True},
                "pair-1": _endpoint("pair", 1, 2, sims["pair-1"].port),
                "solo": _endpoint("solo", 0, 1, sims["solo"].port),
                "router-1": {"sglang_service_endpoint": {
                    "cluster_url": f"http://127.0.0.1:{router_port}", "variant": "instruct",
                    "prometheus_url": f"http://127.0.0.1:{router_metrics}/metrics"}}}
    targets = mon.sglang_monitoring_targets(["pair-0", "pair-1", "solo"], hostvars, ["router-1"],
                                            dcgm_port=dcgm.server_address[1])
    (tmp / "targets").mkdir()
    (tmp / "rules").mkdir()
    for job, items in targets.items():
        (tmp / "targets" / f"{job}.json").write_text(mon.sglang_monitoring_json(items))
    rules = mon.sglang_monitoring_rules(SETTINGS, mon.sglang_monitoring_groups(targets))
    (tmp / "rules" / "sglang.yml").write_text(yaml.safe_dump(rules))
    config = mon.sglang_monitoring_prometheus_config(SETTINGS, str(tmp))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"))
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()

    def traffic() -> None:
        body = {"text": "Question: What is 15% of 240?\nAnswer:",
                "sampling_params": {"max_new_tokens": 16}}
        router_url = f"http://127.0.0.1:{router_port}/generate"
        while not stop.is_set():
            for name in ("pair-0", "solo"):
                sims[name].request("/generate", body)
            request = urllib.request.Request(router_url, json.dumps(body).encode(),
                                             {"Authorization": f"Bearer {KEY}",
                                              "Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=10).read()
            except OSError:
                pass  # the router may still be starting
            stop.wait(0.2)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    # Ready when every target is up and both groups have a p95 (a few scrapes of traffic).
    deadline = time.monotonic() + 60
    while True:
        try:
            ups = query(base, "up")
            p95 = query(base, "deployment_group:sglang_ttft_seconds:p95 >= 0")
            if len(ups) == 7 and all(u["value"][1] == "1" for u in ups) and len(p95) == 2:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            break  # the tests say what is missing
        time.sleep(1)
    yield SimpleNamespace(base=base, tmp=tmp, targets=targets)
    stop.set()
    thread.join(timeout=15)
    for proc in (prometheus, router):
        proc.terminate()
        proc.wait(timeout=30)
    dcgm.shutdown()
    for sim in sims.values():
        sim.stop()


def test_every_target_is_up(stack):
    ups = {(u["metric"]["job"], u["metric"]["instance"]): u["value"][1]
           for u in query(stack.base, "up")}
    expected = {(job, t) for job, items in stack.targets.items() for item in items
                for t in item["targets"]}
    assert set(ups) == expected and len(expected) == 7
    assert set(ups.values()) == {"1"}, ups


@pytest.mark.parametrize("uid, title, expr", mon.sglang_monitoring_queries(
    mon.sglang_monitoring_dashboards(), rate_interval="30s"), ids=lambda v: str(v)[:40])
def test_every_panel_returns_series(stack, uid, title, expr):
    returns_series(stack.base, expr)


def test_a_query_that_returns_nothing_or_errors_fails(stack):
    with pytest.raises(AssertionError, match="no series"):
        returns_series(stack.base, "sglang:no_such_metric")
    with pytest.raises(AssertionError, match="parse error"):
        returns_series(stack.base, "sum by (")


def test_rank_1_is_health_checked_not_scraped_for_metrics(stack):
    ranks = query(stack.base, 'up{job="sglang_ranks", metrics="none"}')
    assert [r["metric"]["rank"] for r in ranks] == ["1"]
    assert query(stack.base, 'up{job="sglang_servers", rank="1"}') == []


def test_every_scheduler_of_the_dp_attention_group_reports(stack):
    series = query(stack.base, 'sglang:num_running_reqs{deployment_group="pair"}')
    assert sorted(int(s["metric"]["dp_rank"]) for s in series) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_the_fleet_overview_draws(stack, tmp_path):
    png = Path(os.environ.get("MONITORING_PNG") or tmp_path / "fleet.png")
    time.sleep(float(os.environ.get("MONITORING_SOAK") or 0))  # a longer picture
    tool = load_file("fleet_overview_png", ROOT / "tools" / "fleet_overview_png.py")
    minutes = max(1.0, float(os.environ.get("MONITORING_SOAK") or 0) / 60)
    drawn = tool.draw(stack.base, str(png), minutes=minutes, rate_interval="30s")
    assert drawn >= 8 and png.stat().st_size > 10_000
