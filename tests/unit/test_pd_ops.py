"""Prefill/decode deployments in the operations playbooks: the pools a router fronts, the
topology plan.yml and status.yml print, the rollout's batches and per-pool floor, and the
benchmark's per-node figures beside the LMSYS blog's."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_pd_ops as pd
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_rollout as rollout


def inventory(decode_servers=2, pending=(), monolithic=False):
    """One router over a prefill pool (one 2-node server) and a decode pool of single-node
    servers; optionally a monolithic server beside them."""
    layout = {"p1a": ("prefill-1", 0), "p1b": ("prefill-1", 1)}
    layout.update({f"d{i}": (f"decode-{i}", 0) for i in range(1, decode_servers + 1)})
    if monolithic:
        layout["m1"] = ("mono", 0)
    hostvars = {host: {"sglang_service_endpoint": {
        "group": group, "rank": rank, "cluster_url": f"http://{host}:30000"},
        "__sglang_rollout_pending": group in pending} for host, (group, rank) in layout.items()}
    hostvars["r1"] = {"sglang_router_prefill_group": "pd_prefill",
                      "sglang_router_decode_group": "pd_decode"}
    groups = {"pd_prefill": ["p1a", "p1b"],
              "pd_decode": [h for h in layout if h.startswith("d")],
              "sglang_routers": ["r1"]}
    servers = [h for h in layout]
    return servers, hostvars, groups


def test_a_pd_router_names_its_pools_and_their_servers():
    _, hostvars, groups = inventory()
    [deployment] = pd.sglang_pd_deployments(["r1"], hostvars, groups)
    assert deployment["prefill"] == {"group": "pd_prefill", "hosts": ["p1a", "p1b"],
                                     "servers": [{"name": "prefill-1", "hosts": ["p1a", "p1b"]}]}
    assert [s["name"] for s in deployment["decode"]["servers"]] == ["decode-1", "decode-2"]
    assert pd.sglang_pd_pool_of([deployment])["d2"] == {
        "pool": "pd_decode", "mode": "decode", "router": "r1"}


def test_a_monolithic_router_is_no_pd_deployment():
    _, hostvars, groups = inventory()
    hostvars["r2"] = {"sglang_router_server_group": "mono"}
    assert [d["router"] for d in pd.sglang_pd_deployments(["r1", "r2"], hostvars, groups)] == ["r1"]


def test_a_pool_that_is_no_inventory_group_names_the_variable():
    _, hostvars, groups = inventory()
    hostvars["r1"]["sglang_router_decode_group"] = "pd_decdoe"
    with pytest.raises(AnsibleFilterError, match="sglang_router_decode_group is 'pd_decdoe'"):
        pd.sglang_pd_deployments(["r1"], hostvars, groups)


def test_the_topology_line_shows_each_pool_its_servers_and_nodes():
    _, hostvars, groups = inventory()
    assert pd.sglang_pd_topology(pd.sglang_pd_deployments(["r1"], hostvars, groups)) == [
        "router r1 (pd): prefill pool pd_prefill (1 server(s), 2 node(s)): prefill-1 [p1a, p1b]; "
        "decode pool pd_decode (2 server(s), 2 node(s)): decode-1 [d1], decode-2 [d2]"]


def plan(decode_servers=2, pending=(), floor=1, batch_size=1, monolithic=False):
    servers, hostvars, groups = inventory(decode_servers, pending, monolithic)
    pools = pd.sglang_pd_pool_of(pd.sglang_pd_deployments(["r1"], hostvars, groups))
    return rollout.sglang_rollout_plan(rollout.sglang_rollout_groups(servers, hostvars, pools),
                                       batch_size, floor, [])


def names(result):
    return [[g["name"] for g in batch] for batch in result["batches"]]


def test_groups_carry_their_pool_and_mode():
    servers, hostvars, groups = inventory(monolithic=True)
    pools = pd.sglang_pd_pool_of(pd.sglang_pd_deployments(["r1"], hostvars, groups))
    found = {g["name"]: (g["pool"], g["mode"])
             for g in rollout.sglang_rollout_groups(servers, hostvars, pools)}
    assert found == {"prefill-1": ("pd_prefill", "prefill"), "decode-1": ("pd_decode", "decode"),
                     "decode-2": ("pd_decode", "decode"), "mono": ("", "")}


def test_prefill_and_decode_groups_roll_one_at_a_time_like_any_group():
    result = plan(decode_servers=3, pending=("decode-1", "decode-2", "decode-3"))
    assert names(result) == [["decode-1"], ["decode-2"], ["decode-3"]]
    assert result["problems"] == []


def test_the_decode_pool_never_goes_below_the_floor_whatever_the_batch_size():
    # 3 decode servers, floor 1: at most 2 of them in one batch, though the batch size is 4.
    result = plan(decode_servers=3, pending=("decode-1", "decode-2", "decode-3"),
                  batch_size=4, floor=1)
    assert names(result) == [["decode-1", "decode-2"], ["decode-3"]]
    assert result["problems"] == []


def test_a_batch_fills_up_across_pools():
    # Floor 0: both decode servers fit one batch of 2; the monolithic server follows.
    result = plan(pending=("decode-1", "decode-2", "mono"), batch_size=2, floor=0,
                  monolithic=True)
    assert names(result) == [["decode-1", "decode-2"], ["mono"]]
    # Floor 1: one decode server per batch; the next batch takes the other and the
    # monolithic server (whose own floor is 0 serving of 1: refused, and said so).
    result = plan(pending=("decode-1", "decode-2", "mono"), batch_size=2, floor=1,
                  monolithic=True)
    assert names(result) == [["decode-1"], ["decode-2", "mono"]]
    assert result["problems"] == [
        "a batch of 1 of 1 groups would leave 0 serving, below sglang_rollout_min_serving_groups "
        "(1): lower sglang_rollout_batch_size or the floor"]


def test_rolling_the_only_decode_server_is_refused_naming_the_floor():
    problems = plan(decode_servers=1, pending=("decode-1",), floor=1)["problems"]
    assert problems == [
        "the decode pool pd_decode has 1 server(s): rolling one would leave 0 serving, below "
        "sglang_rollout_min_serving_groups (1), which every pool keeps: add a decode server "
        "to pd_decode or lower the floor"]


def test_rolling_the_only_prefill_server_is_refused_too():
    problems = plan(pending=("prefill-1",), floor=1)["problems"]
    assert len(problems) == 1 and problems[0].startswith("the prefill pool pd_prefill has 1")


def test_the_floor_counts_per_pool_not_over_the_whole_fleet():
    # Four groups in all, but the decode pool has two: floor 2 refuses rolling either.
    problems = plan(pending=("decode-1",), floor=2, monolithic=True)["problems"]
    assert [p.split(":")[0] for p in problems] == [
        "the decode pool pd_decode has 2 server(s)"]


def test_with_floor_0_a_single_decode_server_may_roll():
    result = plan(decode_servers=1, pending=("decode-1",), floor=0)
    assert names(result) == [["decode-1"]] and result["problems"] == []


BLOG = {"source": "LMSYS blog 2025-07-20",
        "figures": {"prefill_input_per_node": 56000, "decode_output_per_node": 24000}}


def test_per_node_figures_divide_by_each_pools_nodes():
    _, hostvars, groups = inventory(decode_servers=3)
    [deployment] = pd.sglang_pd_deployments(["r1"], hostvars, groups)
    figures = pd.sglang_benchmark_pd_per_node(
        {"input_throughput": 112000.0, "output_throughput": 36000.0}, deployment, BLOG)
    assert (figures["prefill_nodes"], figures["decode_nodes"]) == (2, 3)
    rows = {r["key"]: r for r in figures["rows"]}
    assert rows["prefill_input_per_node"]["ours"] == 56000.0
    assert rows["prefill_input_per_node"]["ratio"] == 1.0
    assert rows["decode_output_per_node"]["ours"] == 12000.0
    assert rows["decode_output_per_node"]["ratio"] == 0.5
    text = pd.sglang_benchmark_pd_markdown(figures)
    assert "| Decode: output tok/s per decode node | 12,000.00 | 36,000.00 (3 node(s)) | " \
           "24,000.00 | 0.5000 (higher is better) |" in text
    assert "2 prefill node(s), 3 decode node(s)" in text


def test_a_failed_run_has_no_per_node_figures():
    _, hostvars, groups = inventory()
    [deployment] = pd.sglang_pd_deployments(["r1"], hostvars, groups)
    rows = pd.sglang_benchmark_pd_per_node(None, deployment, BLOG)["rows"]
    assert [(r["ours"], r["ratio"]) for r in rows] == [(None, None), (None, None)]


def test_the_blog_profile_is_2000_in_100_out_and_needs_no_download():
    import yaml
    from conftest import ROOT
    from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_benchmark as bench
    role_vars = yaml.safe_load((ROOT / "roles/sglang_benchmark/vars/main.yml").read_text())
    published = role_vars["__sglang_benchmark_published_profiles"]
    assert published["pd-blog"] == {
        "dataset": "random-ids", "random_input_len": 2000, "random_output_len": 100,
        "random_range_ratio": 1.0, "num_prompts": 2048, "max_concurrency": 512}
    assert role_vars["__sglang_benchmark_pd_published_reference"]["figures"] == {
        "prefill_input_per_node": 56000, "decode_output_per_node": 24000}
    settings = {"published": published, "custom": {}, "run": ["pd-blog"], "sweep": [],
                "sweep_profile": "throughput", "prompts_per_concurrency": 10, "timeout": 3600,
                "sharegpt_src": "", "sharegpt_url": "https://example/x.json",
                "sharegpt_sha256": "", "tokenizer": "moonshotai/Kimi-K2-Instruct"}
    assert bench.sglang_benchmark_problems(settings) == []


def test_the_report_benchmarks_pd_servers_through_their_router_per_node():
    from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_benchmark as bench
    _, hostvars, groups = inventory(decode_servers=3)
    [deployment] = pd.sglang_pd_deployments(["r1"], hostvars, groups)
    run = bench.sglang_benchmark_outcome(
        {"name": "pd-blog", "profile_name": "pd-blog", "concurrency": None,
         "profile": {"dataset": "random-ids", "num_prompts": 8}, "timeout": 60},
        {"finished": 1, "result": {"completed": 8, "duration": 2.0,
                                   "input_throughput": 8000.0, "output_throughput": 400.0}})
    router = {"host": "r1", "group": "router:r1", "variant": "instruct", "url": "u",
              "runner": "p1a", "sglang_version": "0.5.6.post1", "reference": {},
              "runs": pd.sglang_benchmark_pd_runs([run], deployment, BLOG)}
    half = {"host": "d1", "group": "decode-1", "variant": "instruct",
            "through_router": "a decode server: benchmarked with its pool through its PD router"}
    report = bench.sglang_benchmark_report(
        ["d1", "r1"], {"d1": {"sglang_benchmark_result": half},
                       "r1": {"sglang_benchmark_result": router}}, "inv", "ts")
    hosts = {h["host"]: h for h in report["hosts"]}
    assert report["passed"]
    assert not hosts["d1"]["benchmarked"] and "through its PD router" in hosts["d1"]["why"]
    [row] = hosts["r1"]["runs"]
    assert row["pd"]["rows"][0]["ours"] == 4000.0  # 8000 input tok/s over 2 prefill nodes
    markdown = bench.sglang_benchmark_markdown(row, hosts["r1"])
    assert "| Prefill: input tok/s per prefill node | 4,000.00 | 8,000.00 (2 node(s)) | " \
           "56,000.00 | 0.0714 (higher is better) |" in markdown
    assert "| Decode: output tok/s per decode node | 133.33 |" in markdown


def test_the_topology_picture_draws_the_example_inventorys_pd_deployment(tmp_path):
    """tools/pd_topology_png.py: the README's docs/pd-topology.png, from the production
    example (ansible-inventory only; connects to nothing)."""
    import subprocess
    import sys
    from conftest import ROOT
    out = tmp_path / "pd.png"
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "pd_topology_png.py"),
                          str(ROOT / "inventories" / "production"), str(out)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("router router-kimi-pd (pd): prefill pool kimi_pd_prefill "
                                 "(1 server(s), 2 node(s)): kimi_pd_prefill_1 [h200-p01, h200-p02]")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_deployment_host_without_a_passing_verification_is_named():
    hostvars = {"r1": {"sglang_verify_result": {"passed": True}},
                "p1": {"sglang_verify_result": {"passed": False}}, "d1": {}}
    assert pd.sglang_pd_unverified(["r1", "p1", "d1"], hostvars) == ["p1", "d1"]


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
    assert pd.sglang_pd_bootstrap_servers(host, hostvars, groups) == servers


@pytest.mark.parametrize("host,paths", [
    # A decode node: to each bootstrap server it depends on, from itself.
    ("d1b", [("d1b", "10.0.0.1:8998"), ("d1b", "10.0.0.2:9000"), ("d1b", "[fd00::4]:8998")]),
    # A prefill's node 0: to its own, from every node of the decode pools it is paired with.
    ("p1", [("d1", "10.0.0.1:8998"), ("d1b", "10.0.0.1:8998")]),
    ("p3", [("d1", "[fd00::4]:8998"), ("d1b", "[fd00::4]:8998")]),
    ("p2b", []), ("d9", []), ("m1", []), ("r1", []),
])
def test_the_rollout_walks_every_path_of_a_servers_kv_handshake(host, paths):
    hostvars, groups = pd_fleet()
    assert [(p["from"], p["to"]) for p in pd.sglang_pd_bootstrap_paths(host, hostvars, groups)] \
        == paths


def test_a_path_that_did_not_answer_200_is_named_with_why():
    def result(to, **fields):
        return {"item": {"from": "d1", "to": to}, **fields}
    results = [result("p1:8998", status=200),
               result("p2:8998", status=-1, msg="Status code was -1 and not [200]: Request "
                                                "failed: <urlopen error timed out>"),
               result("p3:8998", status=503, msg=""), result("p4:8998", skipped=True)]
    assert pd.sglang_pd_unanswered(results) == [
        "d1 cannot reach the bootstrap server p2:8998 (Status code was -1 and not [200]: "
        "Request failed: <urlopen error timed out>)",
        "d1 cannot reach the bootstrap server p3:8998 (HTTP 503)"]
    assert pd.sglang_pd_unanswered([]) == []
