"""A host's verdict and the fleet report, from recorded smoke and GSM8K results."""
import pytest

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_verify as report

ENDPOINT = {"variant": "instruct", "group": "pair1", "rank": "0", "argv": ["--tp-size", "8"],
            "sglang_version": "0.5.6.post1"}


def slice_of(right, wrong, invalid=0, seconds=2.0):
    records = ([{"index": i, "label": 1, "prediction": 1, "tokens": 10} for i in range(right)]
               + [{"index": i, "label": 1, "prediction": 2, "tokens": 10} for i in range(wrong)]
               + [{"index": i, "label": 1, "prediction": -9999999, "tokens": 0}
                  for i in range(invalid)])
    return {"records": records, "seconds": seconds}


def facts(smoke=None, slices=None, threshold=0.93):
    return {"host": "h1", "endpoint": ENDPOINT, "url": "http://127.0.0.1:30000",
            "smoke": smoke if smoke is not None else [
                {"name": "health", "passed": True, "seconds": 0.1},
                {"name": "chat", "passed": True, "seconds": 1.0}],
            "gsm8k_slices": slices if slices is not None else [slice_of(96, 4)],
            "gsm8k_method": "sglang", "threshold": threshold}


def test_a_passing_host():
    verdict = report.sglang_verify_verdict(facts())
    assert verdict["passed"] and verdict["problems"] == [] and verdict["health"]
    assert verdict["gsm8k"]["accuracy"] == 0.96 and verdict["smoke_passed"] == 2
    assert verdict["rank"] == 0 and verdict["argv"] == ["--tp-size", "8"]


def test_slices_add_up_with_sglangs_definitions():
    verdict = report.sglang_verify_verdict(facts(slices=[slice_of(50, 0, seconds=1.0),
                                                         slice_of(40, 5, 5, seconds=3.0)]))
    gsm8k = verdict["gsm8k"]
    assert gsm8k["questions"] == 100 and gsm8k["accuracy"] == 0.9
    assert gsm8k["invalid"] == 0.05 and gsm8k["latency"] == 4.0
    assert gsm8k["output_throughput"] == 950 / 4.0


def test_below_threshold_names_the_figure_and_the_threshold():
    verdict = report.sglang_verify_verdict(facts(slices=[slice_of(50, 50)]))
    assert not verdict["passed"]
    assert verdict["problems"] == [
        "h1: GSM8K accuracy 0.500 is below the instruct threshold 0.930 (100 questions, "
        "method sglang, invalid 0.000)"]


def test_a_failed_check_says_what_was_expected_and_what_came():
    verdict = report.sglang_verify_verdict(facts(smoke=[
        {"name": "health", "passed": True},
        {"name": "chat", "passed": False, "expected": "36 in content", "got": "37"}]))
    assert verdict["problems"] == ["h1: smoke check chat failed: expected 36 in content, "
                                   "got 37"]


def test_no_smoke_result_fails_and_rank_one_needs_no_gsm8k():
    assert not report.sglang_verify_verdict(facts(smoke=[]))["passed"]
    rank1 = report.sglang_verify_verdict(facts(smoke=[{"name": "health", "passed": True}],
                                               slices=[]))
    assert rank1["passed"] and rank1["gsm8k"] is None


def test_fleet_fails_when_a_host_has_no_result():
    good = report.sglang_verify_verdict(facts())
    fleet = report.sglang_fleet_report(["h1", "h2"], {"h1": {"sglang_verify_result": good},
                                                      "h2": {}}, "production", "T")
    assert not fleet["passed"]
    assert fleet["hosts"][1]["problems"] == [
        "h2: no verify result (unreachable or failed earlier)"]
    gpu = {"host": "h1", "passed": True, "problems": []}
    fleet = report.sglang_fleet_report(
        ["h1"], {"h1": {"sglang_verify_result": good, "gpu_preflight_result": gpu}},
        "production", "T")
    assert fleet["passed"] and fleet["hosts"][0]["gpu"] == gpu
    with pytest.raises(report.AnsibleFilterError):
        report.sglang_fleet_report([], {}, "production", "T")


def pd_fleet():
    """Two PD deployments: router r1 pairs prefill pool pa (p1, 2-node p2) with decode pool
    da (d1); r2 pairs pool pb (p3) with da too; d9 is in a pool no router fronts."""
    def server(mode, address, rank=0, port=None):
        return {"sglang_service_endpoint": {
            "disaggregation_mode": mode, "rank": rank, "bootstrap_port": port,
            "cluster_url": f"http://{address}:30000"}}
    hostvars = {"p1": server("prefill", "10.0.0.1", port=8998),
                "p2": server("prefill", "10.0.0.2", port=9000),
                "p2b": server("prefill", "10.0.0.3", rank=1, port=9000),
                "p3": server("prefill", "[fd00::4]", port=8998),
                "d1": server("decode", "10.0.1.1"), "d1b": server("decode", "10.0.1.2", rank=1),
                "d9": server("decode", "10.0.1.9"), "m1": server("", "10.0.2.1"),
                "r1": {"sglang_router_prefill_group": "pa", "sglang_router_decode_group": "da"},
                "r2": {"sglang_router_prefill_group": "pb", "sglang_router_decode_group": "da"},
                "r3": {"sglang_router_server_group": "mono"}}
    groups = {"sglang_routers": ["r1", "r2", "r3"], "pa": ["p1", "p2", "p2b"], "pb": ["p3"],
              "da": ["d1", "d1b"], "db": ["d9"], "mono": ["m1"]}
    return hostvars, groups


@pytest.mark.parametrize("host,servers", [
    # Every node of a decode server: each prefill (its node 0) of every router's pool.
    ("d1", ["10.0.0.1:8998", "10.0.0.2:9000", "[fd00::4]:8998"]),
    ("d1b", ["10.0.0.1:8998", "10.0.0.2:9000", "[fd00::4]:8998"]),
    ("p2", ["10.0.0.2:9000"]),   # a prefill: its own
    ("p2b", []),                  # its node 1 runs no bootstrap server
    ("d9", []),                   # no router in the inventory says whom it meets
    ("m1", []), ("r1", []),       # monolithic servers and routers have none
])
def test_each_server_is_given_the_bootstrap_servers_it_depends_on(host, servers):
    hostvars, groups = pd_fleet()
    assert report.sglang_verify_bootstrap_servers(host, hostvars, groups) == servers
