"""plugins/filter/sglang_monitoring.py: scrape targets from the endpoint facts, the
settings refused, the dashboards' shape; and --enable-metrics-for-all-schedulers in the
launch builder. The rules under promtool: test_monitoring_rules.py; the dashboards'
queries on a real Prometheus: test_monitoring_dashboards.py.
"""
from __future__ import annotations

import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_launch as builder
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_monitoring as mon


def _server(group: str, rank: int, nnodes: int, address: str, metrics=True) -> dict:
    return {"sglang_service_endpoint": {
        "url": "http://127.0.0.1:30000", "cluster_url": f"http://{address}:30000",
        "variant": "instruct", "group": group, "rank": str(rank), "nnodes": str(nnodes),
        "metrics": metrics, "sglang_version": "0.5.6.post1"}}


HOSTVARS = {
    "fleet-1": {**_server("pair1", 0, 2, "10.0.0.1"), "nvidia_driver_dcgm_exporter_enabled": True},
    "fleet-2": _server("pair1", 1, 2, "10.0.0.2"),
    "solo-1": _server("solo-1", 0, 1, "10.0.0.3", metrics=False),
    "router-1": {"sglang_service_endpoint": {
        "cluster_url": "http://10.0.0.9:8000", "variant": "instruct",
        "prometheus_url": "http://127.0.0.1:29000/metrics"},
        "sglang_router_prometheus_host": "127.0.0.1"},
}
SERVERS = ["fleet-1", "fleet-2", "solo-1"]


def test_rank_0_with_metrics_is_scraped_every_rank_is_health_checked():
    jobs = mon.sglang_monitoring_targets(SERVERS, HOSTVARS, ["router-1"])
    assert [t["targets"] for t in jobs["sglang_servers"]] == [["10.0.0.1:30000"]]
    assert jobs["sglang_servers"][0]["labels"] == {
        "deployment_group": "pair1", "variant": "instruct", "sglang_version": "0.5.6.post1",
        "rank": "0", "nnodes": "2", "host": "fleet-1"}
    ranks = {t["labels"]["host"]: t["labels"]["metrics"] for t in jobs["sglang_ranks"]}
    assert ranks == {"fleet-1": "sglang", "fleet-2": "none", "solo-1": "disabled"}


def test_routers_dcgm_and_node_exporters():
    jobs = mon.sglang_monitoring_targets(SERVERS, HOSTVARS, ["router-1"], node_exporter_port=9100)
    # A loopback exporter is named by the router's cluster address (preflight refuses a
    # remote scraper for it).
    assert jobs["sglang_routers"][0]["targets"] == ["10.0.0.9:29000"]
    assert [t["targets"] for t in jobs["dcgm_exporters"]] == [["10.0.0.1:9400"]]
    assert len(jobs["node_exporters"]) == 4
    assert mon.sglang_monitoring_targets(SERVERS, HOSTVARS)["node_exporters"] == []


def test_a_host_without_an_endpoint_fact_is_an_error():
    with pytest.raises(AnsibleFilterError, match="playbooks/endpoints.yml"):
        mon.sglang_monitoring_targets(["bare"], {"bare": {}})


GOOD = {"sglang_monitoring_objectives": {"default": {"ttft_p95_seconds": 5,
                                                     "itl_p95_seconds": 0.1}},
        "sglang_monitoring_host": "", "sglang_monitoring_grafana_host": ""}


@pytest.mark.parametrize("change, words", [
    ({"sglang_monitoring_objectives": {"default": {"ttft_p95_seconds": 0, "itl_p95_seconds": 1}}},
     "sglang_monitoring_objectives.default.ttft_p95_seconds is 0: set a positive number"),
    ({"sglang_monitoring_objectives": {"default": {"ttft_p95_seconds": 5, "itl_p95_seconds": 1},
                                       "pair1": {"itl_p95_seconds": "fast"}}},
     "sglang_monitoring_objectives.pair1.itl_p95_seconds is 'fast'"),
    ({"sglang_monitoring_objectives": {"default": {"ttft_p95_seconds": 5, "itl_p95_seconds": 1},
                                       "pair1": {"itl_p95_seconds": True}}},
     "sglang_monitoring_objectives.pair1.itl_p95_seconds is True"),
    ({"sglang_monitoring_objectives": {"default": {"ttft_p95_seconds": 5}}},
     "sglang_monitoring_objectives.default lacks itl_p95_seconds"),
    ({"sglang_monitoring_objectives": {"pair1": {}}}, "with a 'default' entry"),
    ({"sglang_monitoring_host": "mon-9"}, "sglang_monitoring_host is 'mon-9', which is not a host"),
    ({"sglang_monitoring_grafana_host": "graf"}, "sglang_monitoring_grafana_host is 'graf'"),
    ({"sglang_monitoring_scraper_remote": True},
     "sglang_router_prometheus_host is 127.0.0.1 on router-1"),
])
def test_bad_settings_are_refused_naming_the_variable(change, words):
    problems = mon.sglang_monitoring_problems({**GOOD, **change}, list(HOSTVARS),
                                              ["router-1"], HOSTVARS)
    assert len(problems) == 1 and words in problems[0], problems


def test_good_settings_pass():
    assert mon.sglang_monitoring_problems({**GOOD, "sglang_monitoring_host": "fleet-1"},
                                          list(HOSTVARS), ["router-1"], HOSTVARS) == []


def test_dashboards_are_grafana_json_with_a_query_per_panel():
    boards = mon.sglang_monitoring_dashboards()
    assert set(boards) == {"sglang-fleet", "sglang-server", "sglang-router", "sglang-gpus"}
    for uid, board in boards.items():
        assert json.loads(mon.sglang_monitoring_json(board))["uid"] == uid
        assert board["panels"] and all(p["targets"][0]["expr"] for p in board["panels"])
        assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    queries = mon.sglang_monitoring_queries(boards, group="pair1")
    assert not any("$" in expr for _, _, expr in queries)


def _latency(metrics=True, profile="latency") -> dict:
    return {"sglang_version": "0.5.6.post1", "variant": "instruct", "profile": profile,
            "gpu_model": "H200", "gpus_per_node": 8, "host": "0.0.0.0", "port": 30000,
            "metrics_enabled": metrics}


def test_dp_attention_servers_report_every_scheduler():
    argv = builder.sglang_launch_argv(_latency())
    assert "--enable-metrics-for-all-schedulers" in argv
    assert builder.argv_problems(argv, "0.5.6.post1") == []
    assert "--enable-metrics-for-all-schedulers" not in builder.sglang_launch_argv(
        _latency(metrics=False))
    assert "--enable-metrics-for-all-schedulers" not in builder.sglang_launch_argv(
        _latency(profile="tp8"))


def test_a_version_without_the_flag_goes_without(monkeypatch):
    real = builder.load_manifest("0.5.6.post1")
    older = {**real, "options": [o for o in real["options"]
                                 if "--enable-metrics-for-all-schedulers" not in o["opts"]]}
    monkeypatch.setattr(builder, "load_manifest", lambda version: older)
    argv = builder.sglang_launch_argv(_latency())
    assert "--enable-metrics" in argv and "--enable-metrics-for-all-schedulers" not in argv
