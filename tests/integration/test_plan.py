"""playbooks/plan.yml renders every host's unit on the controller and touches no host."""
import json
import re
import shutil
import subprocess

import pytest
import yaml

from runner import ROOT, play, task_results

PRODUCTION = ["h200-a01", "h200-a02", "h200-b01", "h200-b02", "h200-b03", "h200-b04",
              "h200-d01", "h200-d02", "h200-d03", "h200-d04", "h200-p01", "h200-p02"]
# The disaggregated deployment (issue 17): its prefill pool, then its decode pool.
PREFILL, DECODE = ["h200-p01", "h200-p02"], ["h200-d01", "h200-d02", "h200-d03", "h200-d04"]


@pytest.fixture(scope="module")
def production_plan(tmp_path_factory):
    # The production hosts do not exist: success proves plan.yml never connects.
    return play("playbooks/plan.yml", "production", tmp_path_factory.mktemp("plan"),
                {"vault_sglang_service_api_key": "plan-test-key",
                 "vault_sglang_service_hf_token": "hf-plan-test-token"})


# The example's routers (sglang_routers): plan.yml renders them too.
ROUTERS = sorted(yaml.safe_load((ROOT / "inventories" / "production" / "hosts.yml").read_text())
                 ["all"]["children"]["sglang_routers"]["hosts"])


def test_plan_succeeds_for_every_host_without_connecting(production_plan):
    assert production_plan.status == "successful", production_plan.stdout.read()
    stats = production_plan.stats
    # localhost: the controller prints each PD deployment's topology (plays/pd_topology.yml).
    assert sorted(stats["ok"]) == sorted(PRODUCTION + ROUTERS + ["localhost"])
    assert not stats["dark"] and not stats["failures"]


@pytest.mark.parametrize("router", ROUTERS)
def test_each_router_is_planned_with_its_whole_command_line(production_plan, router):
    """Issue 17: a router naming two pools renders --pd-disaggregation, and its worker file
    gives each prefill server with its bootstrap port and each decode server (the launcher
    turns the file into --prefill URL PORT / --decode URL); a monolithic router, its URLs."""
    folder = ROOT / "plan" / "production" / router
    plan = json.loads((folder / "router-argv.json").read_text())
    line = task_results(production_plan, "runner_on_ok", "show its command line")[router]["msg"]
    assert line.endswith(" ".join(plan["argv"] + plan["worker_argv"]))
    unit = (folder / "sglang-router.service").read_text()
    workers = [w for w in (folder / "workers").read_text().splitlines()
               if w and not w.startswith("#")]
    if plan["mode"] == "pd":
        assert "--pd-disaggregation" in plan["argv"] and "--pd-disaggregation" in unit
        assert {w.split()[0] for w in workers} == {"prefill", "decode"}
        assert all(len(w.split()) == 3 and w.split()[2].isdigit()
                   for w in workers if w.startswith("prefill"))
        assert plan["worker_argv"].count("--prefill") + plan["worker_argv"].count("--decode") \
            == len(workers)
    else:
        assert "--pd-disaggregation" not in unit and plan["worker_argv"][0] == "--worker-urls"
        assert workers == plan["worker_argv"][1:]
    assert "plan-test-key" not in unit + json.dumps(plan)


def test_plan_prints_one_line_per_host_with_group_rank_and_argv(production_plan):
    lines = task_results(production_plan, "runner_on_ok", "show its launch command")
    assert sorted(lines) == PRODUCTION
    assert lines["h200-b02"]["msg"].startswith("kimi_instruct_pair1 rank 1/2: --model-path")
    assert lines["h200-a01"]["msg"].startswith("h200-a01 rank 0/1: --model-path")


@pytest.mark.parametrize("host,rank,rendezvous", [
    ("h200-b01", 0, "10.10.2.11:50000"), ("h200-b02", 1, "10.10.2.11:50000"),
    ("h200-b03", 0, "10.10.2.13:50000"), ("h200-b04", 1, "10.10.2.13:50000"),
])
def test_ranks_follow_group_order_and_node0_is_the_rendezvous(production_plan, host, rank,
                                                              rendezvous):
    plan = json.loads((ROOT / "plan" / "production" / host / "argv.json").read_text())
    argv = " ".join(plan["argv"])
    assert f"--nnodes 2 --node-rank {rank} --dist-init-addr {rendezvous}" in argv
    assert "--tp-size 16" in argv


def test_plan_artifacts_hold_no_secret(production_plan):
    for host in PRODUCTION:
        folder = ROOT / "plan" / "production" / host
        for path in folder.iterdir():
            text = path.read_text()
            assert "plan-test-key" not in text and "hf-plan-test-token" not in text, path
        assert "HF_TOKEN=<redacted>" in (folder / "sglang.env").read_text()
    assert "plan-test-key" not in production_plan.stdout.read()


@pytest.mark.parametrize("host,urls", [
    # A single-node server is a group of one (issue 14, fault 6): its own generation probe.
    ("h200-a01", ["http://127.0.0.1:30000/health_generate"]),
    # Each rank probes itself locally, the others at their cluster address; rank 0 always
    # through a generation.
    ("h200-b01", ["http://127.0.0.1:30000/health_generate", "http://10.10.2.12:30000/health"]),
    ("h200-b02", ["http://10.10.2.11:30000/health_generate", "http://127.0.0.1:30000/health"]),
])
def test_every_server_gets_the_watchdog_with_a_generation_probe_of_rank_0(production_plan,
                                                                          host, urls):
    folder = ROOT / "plan" / "production" / host
    settings = json.loads((folder / "group-watchdog.json").read_text())
    assert settings["urls"] == urls
    assert (folder / "sglang-group-watchdog.service").is_file()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("unit", ["sglang.service", "sglang-group-watchdog.service"])
def test_the_planned_units_score_at_most_4_on_systemd_analyze_security(production_plan, unit):
    """The rendered units as systemd scores them offline (issue 14, fault 7); the fleet
    scenario reads the same score, and the router's, from the running test hosts."""
    for host in PRODUCTION:
        path = ROOT / "plan" / "production" / host / unit
        out = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                             capture_output=True, text=True, check=False).stdout
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
        assert score, out
        assert float(score.group(1)) <= 4.0, f"{host} {unit}:\n{out}"


def test_plan_renders_without_a_vault(tmp_path):
    # `make plan INVENTORY=inventories/production` on a checkout with no vault.yml: a
    # plan shows no secret, so it needs none (issue 14, fault 9). The key is still
    # required where it is written to a host (tests/unit/test_launch_action.py).
    runner = play("playbooks/plan.yml", "production", tmp_path)
    assert runner.status == "successful", runner.stdout.read()
    assert sorted(task_results(runner, "runner_on_ok", "show its launch command")) == PRODUCTION
    env = (ROOT / "plan" / "production" / "h200-a01" / "sglang.env").read_text()
    assert "HF_TOKEN" not in env  # the example's token defaults to none without its vault


def test_impossible_layout_fails_before_any_host_is_touched(tmp_path):
    runner = play("playbooks/plan.yml", "production", tmp_path,
                  {"vault_sglang_service_api_key": "k", "sglang_service_tp_size": 32})
    assert runner.status == "failed"
    failed = task_results(runner, "runner_on_failed", "Check the launch command against the "
                                                      "pinned SGLang's rules")
    # The decode pool's servers are tp32 already (4 nodes at ep32): still valid.
    assert sorted(failed) == sorted(set(PRODUCTION) - set(DECODE))
    assert "sglang_service_ep_size to at least 2" in failed["h200-b01"]["msg"]


def test_the_pd_deployment_renders_both_halves(production_plan):
    """Issue 17: the example's disaggregated deployment, as the blog lays it out."""
    def argv(host):
        return " ".join(json.loads((ROOT / "plan" / "production" / host / "argv.json")
                                   .read_text())["argv"])
    prefill, decode = argv("h200-p02"), argv("h200-d01")
    assert "--nnodes 2 --node-rank 1 --dist-init-addr 10.10.3.11:50000" in prefill
    assert "--disaggregation-mode prefill" in prefill
    assert "--disaggregation-bootstrap-port 8998" in prefill
    assert "--moe-a2a-backend deepep --deepep-mode normal" in prefill
    assert "--tp-size 16 --dp-size 16 --ep-size 16 --enable-dp-attention" in prefill
    assert "--nnodes 4 --node-rank 0 --dist-init-addr 10.10.4.11:50000" in decode
    assert "--disaggregation-mode decode" in decode and "bootstrap-port" not in decode
    assert "--prefill-round-robin-balance" in decode  # 0.5.6.post1, dp 32
    assert "--deepep-mode low_latency --enable-eplb --ep-num-redundant-experts 32" in decode
    for host in PREFILL + DECODE:
        unit = (ROOT / "plan" / "production" / host / "sglang.service").read_text()
        assert 'Environment="NCCL_IB_HCA=mlx5_0,mlx5_1,mlx5_2,mlx5_3,mlx5_4,mlx5_5,' in unit
        assert "--disaggregation-ib-device mlx5_0,mlx5_1" in argv(host)


# Each "Done when" refusal of issue 17, made from the example inventory: extra variables,
# or one more inventory file; the hosts refused and words of their message.
BOTH_POOLS = """all:
  children:
    kimi_pd_decode:
      children:
        kimi_pd_decode_2:
          hosts:
            h200-p01:
"""
PD_MISTAKES = {
    "deepep_ep_not_tp": ({"sglang_service_ep_size": 8}, None, PREFILL + DECODE,
                         ["DeepEP", "set sglang_service_ep_size to"]),
    "no_bootstrap_port": ({"sglang_service_disaggregation_bootstrap_port": None}, None, PREFILL,
                          ["needs a bootstrap port",
                           "set sglang_service_disaggregation_bootstrap_port"]),
    "same_node_in_both_pools": ({}, BOTH_POOLS, ["h200-p01"],
                                ["h200-p01 is in the prefill pool kimi_pd_prefill",
                                 "and in the decode pool kimi_pd_decode"]),
    "no_ib_device": ({"sglang_service_disaggregation_ib_devices": []}, None, PREFILL + DECODE,
                     ["moves the KV cache over RDMA",
                      "set sglang_service_disaggregation_ib_devices"]),
    "decode_pool_without_router": ({"sglang_router_decode_group": ""}, None, DECODE,
                                   ["no router's sglang_router_decode_group names a group"]),
}


@pytest.mark.parametrize("case", sorted(PD_MISTAKES))
def test_each_pd_mistake_is_refused_before_any_host_is_touched(tmp_path, case):
    extra, inventory_file, refused, words = PD_MISTAKES[case]
    inventory = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories" / "production", inventory)
    if inventory_file:
        (inventory / "zz-mistake.yml").write_text(inventory_file)
    (tmp_path / "run").mkdir()
    runner = play("playbooks/plan.yml", str(inventory), tmp_path / "run",
                  {"vault_sglang_service_api_key": "k", **extra,
                   "sglang_service_plan_dir": str(tmp_path / "plan" / "{{ inventory_hostname }}")})
    assert runner.status == "failed"
    failed = task_results(runner, "runner_on_failed", "Check the launch command against the "
                                                      "pinned SGLang's rules")
    assert sorted(failed) == sorted(refused)
    for host in refused:
        for word in words:
            assert word in failed[host]["msg"], failed[host]["msg"]
    # Nothing was rendered for any host: the preflight stops each refused one, and the
    # others never reach a host (plan.yml connects to none).
    assert not any((tmp_path / "plan" / host).exists() for host in refused)


def test_the_endpoint_fact_says_each_servers_half(tmp_path):
    """endpoints.yml (connects to nothing) on the demo inventory made a prefill and a
    decode server: the two keys the PD router reads (issue 17)."""
    runner = play("playbooks/endpoints.yml", "demo", tmp_path, {
        "vault_sglang_service_api_key": "k",
        "sglang_service_disaggregation_ib_devices": ["mlx5_0"],
        "sglang_service_disaggregation_mode": "{{ 'prefill' if inventory_hostname == "
                                              "'kimi-demo-1' else 'decode' }}"})
    assert runner.status == "successful", runner.stdout.read()
    facts = {host: res["ansible_facts"]["sglang_service_endpoint"] for host, res in
             task_results(runner, "runner_on_ok", "Describe the endpoint").items()}
    assert facts["kimi-demo-1"]["disaggregation_mode"] == "prefill"
    assert facts["kimi-demo-1"]["bootstrap_port"] == 8998
    assert facts["kimi-demo-2"]["disaggregation_mode"] == "decode"
    assert facts["kimi-demo-2"]["bootstrap_port"] is None
    assert "--disaggregation-bootstrap-port" in facts["kimi-demo-1"]["argv"]
