"""Prefill/decode disaggregation, DeepEP and EPLB in the launch command (issue 17): the
flags, every rule with its message, the environment, and the cross-host topology checks
(plugins/module_utils/sglang_disaggregation.py through the sglang_launch filter)."""
import pytest

from conftest import builder
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_disaggregation as pd

BOTH = ("0.5.6.post1", "0.5.23")


def _pd(deployment, version="0.5.6.post1", **changes):
    """Kimi-K2-Instruct as the blog's halves are laid out: tp16 dp16 ep16 with
    dp-attention over two nodes, DeepEP, EPLB with 32 redundant experts."""
    return {**deployment, "sglang_version": version, "variant": "instruct", "tp_size": 16,
            "dp_size": 16, "ep_size": 16, "dp_attention_enabled": True, "nnodes": 2,
            "node_rank": 0, "dist_init_addr": "10.0.0.1:50000", "dist_init_port": 50000,
            "disaggregation_mode": "prefill", "disaggregation_transfer_backend": "mooncake",
            "disaggregation_bootstrap_port": 8998,
            "disaggregation_ib_devices": ["mlx5_0", "mlx5_1"], "moe_a2a_backend": "deepep",
            "deepep_mode": "normal", "eplb_enabled": True, "ep_num_redundant_experts": 32,
            **changes}


def _after(argv, flag):
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("version", BOTH)
def test_a_prefill_server_renders_its_half(deployment, version):
    argv = builder.sglang_launch_argv(_pd(deployment, version))
    assert _after(argv, "--disaggregation-mode") == "prefill"
    assert _after(argv, "--disaggregation-transfer-backend") == "mooncake"
    assert _after(argv, "--disaggregation-ib-device") == "mlx5_0,mlx5_1"
    assert _after(argv, "--disaggregation-bootstrap-port") == "8998"
    assert _after(argv, "--moe-a2a-backend") == "deepep"
    assert _after(argv, "--deepep-mode") == "normal"
    assert "--enable-eplb" in argv and _after(argv, "--ep-num-redundant-experts") == "32"
    assert "--prefill-round-robin-balance" not in argv
    # Attention DP as each version spells it (sglang_versions.attention_dp_argv).
    if version == "0.5.23":
        assert _after(argv, "--attn-dp-size") == "16" and "--enable-dp-attention" not in argv
    else:
        assert _after(argv, "--dp-size") == "16" and "--enable-dp-attention" in argv


@pytest.mark.parametrize("version", BOTH)
def test_a_decode_server_has_no_bootstrap_port(deployment, version):
    argv = builder.sglang_launch_argv(_pd(
        deployment, version, disaggregation_mode="decode", tp_size=32, dp_size=32, ep_size=32,
        nnodes=4, deepep_mode="low_latency"))
    assert _after(argv, "--disaggregation-mode") == "decode"
    assert "--disaggregation-bootstrap-port" not in argv
    assert _after(argv, "--deepep-mode") == "low_latency"


def test_a_0_5_6_decode_with_dp_gets_round_robin_balance_and_0_5_23_none(deployment):
    # 0.5.6.post1 server_args.py:1868-1873 refuses a decode with dp > 1 without it;
    # 0.5.23 has no such flag (the prefill follows the bootstrap room).
    old = builder.sglang_launch_argv(_pd(deployment, disaggregation_mode="decode"))
    new = builder.sglang_launch_argv(_pd(deployment, "0.5.23", disaggregation_mode="decode"))
    assert "--prefill-round-robin-balance" in old
    assert "--prefill-round-robin-balance" not in new
    single = builder.sglang_launch_argv(_pd(
        deployment, disaggregation_mode="decode", dp_size=None, dp_attention_enabled=False,
        tp_size=8, ep_size=8, nnodes=1, ep_num_redundant_experts=0))
    assert "--prefill-round-robin-balance" not in single


def test_monolithic_servers_render_nothing_new(deployment):
    argv = builder.sglang_launch_argv({**deployment, "disaggregation_mode": "",
                                       "disaggregation_bootstrap_port": 8998,
                                       "disaggregation_ib_devices": ["mlx5_0"],
                                       "moe_a2a_backend": "none", "eplb_enabled": False,
                                       "ep_num_redundant_experts": 0})
    assert argv == builder.sglang_launch_argv(deployment)


def test_the_1p1d_form_on_single_nodes(deployment):
    for role in ("prefill", "decode"):
        assert builder.sglang_launch_problems({
            **deployment, "disaggregation_mode": role, "disaggregation_bootstrap_port": 8998,
            "disaggregation_ib_devices": ["mlx5_0"]}) == []


# Each case: changes to the valid prefill (or decode) server, and words of its one error.
RULES = [
    ({"ep_size": 8}, ["DeepEP", "SGLang sets ep to tp (16)", "sglang_service_ep_size to 16"]),
    ({"moe_a2a_backend": "none", "ep_size": 1, "ep_num_redundant_experts": 0},
     ["EPLB", "needs ep > 1", "sglang_service_ep_size above 1"]),
    ({"ep_num_redundant_experts": 10},
     ["sglang_service_ep_num_redundant_experts 10", "394", "do not split over ep 16", "e.g. 16"]),
    ({"disaggregation_bootstrap_port": None},
     ["needs a bootstrap port", "set sglang_service_disaggregation_bootstrap_port"]),
    ({"disaggregation_bootstrap_port": 30000},
     ["sglang_service_disaggregation_bootstrap_port 30000 collides with sglang_service_port"]),
    ({"disaggregation_bootstrap_port": 50003},
     ["collides with sglang_service_dist_init_port", "derives", "(50000-50006)"]),
    ({"disaggregation_bootstrap_port": 30500},
     ["collides with sglang_service_port + 100..1000", "NCCL port", "(30100-31000)"]),
    ({"disaggregation_bootstrap_port": 30235, "nnodes": 1, "tp_size": 8, "dp_size": 8,
      "ep_size": 8, "ep_num_redundant_experts": 0, "variant": "thinking",
      "sglang_version": "0.5.23"},
     ["collides with sglang_service_port + 233", "(30233-30239)"]),
    ({"host_ports": {"model_weights_peer_port": 8998}},
     ["bootstrap_port 8998 collides with model_weights_peer_port (8998)"]),
    ({"disaggregation_ib_devices": []},
     ["mooncake transfer backend moves the KV cache over RDMA",
      "set sglang_service_disaggregation_ib_devices"]),
    ({"disaggregation_ib_devices": ["mlx5_0,mlx5_1"]},
     ["sglang_service_disaggregation_ib_devices has ['mlx5_0,mlx5_1']", "one list item"]),
    ({"disaggregation_mode": "both"}, ["sglang_service_disaggregation_mode 'both'"]),
    ({"disaggregation_transfer_backend": "rdma"},
     ["sglang_service_disaggregation_transfer_backend 'rdma'", "'mooncake', 'nixl'"]),
    ({"moe_a2a_backend": "mooncake"}, ["sglang_service_moe_a2a_backend 'mooncake'",
                                       "['none', 'deepep']"]),
    ({"deepep_mode": "fast"}, ["sglang_service_deepep_mode 'fast'", "low_latency"]),
    ({"extra_args": ["--disaggregation-bootstrap-port", "9000"]},
     ["sets --disaggregation-bootstrap-port",
      "use sglang_service_disaggregation_bootstrap_port"]),
    ({"extra_args": ["--enable-eplb"]}, ["sets --enable-eplb", "sglang_service_eplb_enabled"]),
    ({"extra_args": ["--load-balance-method", "shortest_queue"]},
     ["--load-balance-method shortest_queue on a prefill server", "only with round_robin"]),
    ({"disaggregation_mode": "decode", "extra_args": ["--disaggregation-decode-tp", "16"]},
     ["sets --disaggregation-decode-tp", "refuses on a decode server"]),
    ({"disaggregation_mode": "decode", "extra_args": ["--prefill-round-robin-balance"]},
     ["sets --prefill-round-robin-balance", "sglang_service_disaggregation_mode"]),
]


@pytest.mark.parametrize("changes,words", RULES, ids=[str(c) for c, _ in RULES])
def test_every_pd_rule_names_what_to_change(deployment, changes, words):
    problems = builder.sglang_launch_problems(_pd(deployment, **changes))
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0], problems[0]


def test_0_5_23_refuses_the_fake_backend_on_a_prefill_only(deployment):
    # 0.5.23 arg_groups/pd_disaggregation_hook.py:145-148.
    fake = {"disaggregation_transfer_backend": "fake"}
    assert builder.sglang_launch_problems(_pd(deployment, "0.5.23", **fake)) == [
        "SGLang 0.5.23 refuses the fake transfer backend on a prefill server: set "
        "sglang_service_disaggregation_transfer_backend to another one"]
    assert builder.sglang_launch_problems(
        _pd(deployment, "0.5.23", disaggregation_mode="decode", **fake)) == []


def test_transfer_backends_come_from_the_pinned_manifest(deployment):
    # mooncake_tcp is 0.5.23's (TCP, no RDMA device needed), not 0.5.6.post1's.
    tcp = {"disaggregation_transfer_backend": "mooncake_tcp", "disaggregation_ib_devices": []}
    assert builder.sglang_launch_problems(_pd(deployment, "0.5.23", **tcp)) == []
    problem, = builder.sglang_launch_problems(_pd(deployment, **tcp))
    assert "'mooncake_tcp' is not a transfer backend of SGLang 0.5.6.post1" in problem


def test_the_environment_names_the_nics_and_the_dispatch_buffer():
    assert pd.environment(["mlx5_0", "mlx5_1"], 256) == {
        "NCCL_IB_HCA": "mlx5_0,mlx5_1",
        "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK": "256"}
    assert pd.environment([], None) == {}


ROUTER = [{"host": "router-pd", "prefill_group": "kimi_prefill", "decode_group": "kimi_decode"}]


def test_a_host_in_a_named_pool_with_its_mode_passes():
    assert pd.topology_problems("p1", "prefill", ["kimi_prefill", "kimi_prefill_1"], ROUTER) == []
    assert pd.topology_problems("m1", "", ["kimi_thinking"], ROUTER) == []


def test_the_same_host_in_both_pools_is_refused():
    problem, = pd.topology_problems("n1", "decode", ["kimi_prefill", "kimi_decode"], ROUTER)
    assert problem.startswith("n1 is in the prefill pool kimi_prefill (router router-pd's "
                              "sglang_router_prefill_group) and in the decode pool kimi_decode")
    assert "remove it from one of the two groups" in problem


def test_a_pool_no_router_names_is_refused():
    problem, = pd.topology_problems("d1", "decode", ["kimi_decode_b"], ROUTER)
    assert "d1 is a decode server (sglang_service_disaggregation_mode: decode)" in problem
    assert "no router's sglang_router_decode_group names a group it is in" in problem
    problem, = pd.topology_problems("p1", "prefill", ["kimi_prefill"], [])
    assert "set sglang_router_prefill_group on a router host" in problem


def test_a_host_in_a_pool_of_the_other_kind_is_refused():
    problems = pd.topology_problems("d1", "", ["kimi_decode"], ROUTER)
    assert problems == ["d1 is in kimi_decode, router router-pd's sglang_router_decode_group, "
                        "but its sglang_service_disaggregation_mode is '': set it to decode in "
                        "the group_vars of kimi_decode"]


def test_0_5_23_prefill_must_follow_the_bootstrap_room(deployment):
    # 0.5.23 arg_groups/serving_hook.py:217-236: auto resolves to follow_bootstrap_room.
    problem, = builder.sglang_launch_problems(_pd(
        deployment, "0.5.23", extra_args=["--load-balance-method", "round_robin"]))
    assert "--load-balance-method round_robin on a prefill server" in problem
    assert "only with auto or follow_bootstrap_room" in problem
    assert builder.sglang_launch_problems(_pd(
        deployment, "0.5.23", extra_args=["--load-balance-method=follow_bootstrap_room"])) == []


def test_every_version_states_its_pd_facts_with_their_reason():
    from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_versions
    for version in sglang_versions.known_versions():
        facts = sglang_versions.rules(version)["disaggregation"]
        assert set(facts) == {"decode_dp_flag", "prefill_load_balance",
                              "prefill_refused_backends", "nccl_port_draw", "why"}, version
        assert facts["why"], version
        flag = facts["decode_dp_flag"]
        assert flag is None or sglang_versions.has_flag(version, flag), version
