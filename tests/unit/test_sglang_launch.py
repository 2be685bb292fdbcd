"""The launch command builder: rendering, every rule and its message, the manifest check."""
import pytest

from conftest import builder


def test_tp8_thinking_renders_the_published_command(deployment):
    assert builder.sglang_launch_argv(deployment) == [
        "--model-path", "moonshotai/Kimi-K2-Thinking",
        "--served-model-name", "moonshotai/Kimi-K2-Thinking",
        "--tp-size", "8", "--trust-remote-code",
        "--reasoning-parser", "kimi_k2", "--tool-call-parser", "kimi_k2",
        "--host", "0.0.0.0", "--port", "30000"]


@pytest.mark.parametrize("profile,expected", [
    ("latency", ["--tp-size", "8", "--dp-size", "4", "--enable-dp-attention"]),
    ("throughput", ["--tp-size", "8", "--dp-size", "4", "--ep-size", "4",
                    "--enable-dp-attention"]),
])
def test_profiles_set_the_published_layout(deployment, profile, expected):
    argv = builder.sglang_launch_argv({**deployment, "variant": "instruct", "profile": profile})
    assert argv[4:4 + len(expected)] == expected
    assert "--reasoning-parser" not in argv


def test_variables_override_the_profile_one_by_one(deployment):
    argv = builder.sglang_launch_argv({**deployment, "profile": "throughput", "ep_size": 8})
    assert "--ep-size 8" in " ".join(argv) and "--dp-size 4" in " ".join(argv)


def test_multi_node_rank_and_rendezvous(deployment):
    argv = builder.sglang_launch_argv({**deployment, "variant": "instruct", "tp_size": 16,
                                       "nnodes": 2, "node_rank": 1,
                                       "dist_init_addr": "10.0.0.1:50000"})
    assert " ".join(argv).count("--nnodes 2 --node-rank 1 --dist-init-addr 10.0.0.1:50000") == 1


def test_optional_settings_render_only_when_set(deployment):
    argv = builder.sglang_launch_argv({
        **deployment, "context_length": 65536, "kv_cache_dtype": "fp8_e4m3",
        "mem_fraction_static": 0.9, "chunked_prefill_size": 8192,
        "max_running_requests": 128, "metrics_enabled": True,
        "secrets_file": "/etc/sglang/secrets.yaml",
        "extra_args": ["--json-model-override-args", '{"rope_scaling": null}']})
    text = " ".join(argv)
    for part in ("--context-length 65536", "--kv-cache-dtype fp8_e4m3",
                 "--mem-fraction-static 0.9", "--chunked-prefill-size 8192",
                 "--max-running-requests 128", "--enable-metrics",
                 "--config /etc/sglang/secrets.yaml"):
        assert part in text
    assert argv[-2:] == ["--json-model-override-args", '{"rope_scaling": null}']


def test_parsers_can_be_disabled_or_named(deployment):
    argv = builder.sglang_launch_argv({**deployment, "variant": "instruct",
                                       "tool_call_parser": "none"})
    assert "--tool-call-parser" not in argv and "--reasoning-parser" not in argv


# Each case: changes to the valid deployment, and words the single error must contain.
RULES = [
    ({"variant": "k3"}, ["sglang_service_variant", "'k3'"]),
    ({"profile": "fast"}, ["sglang_service_profile"]),
    ({"tp_size": 0}, ["sglang_service_tp_size must be >= 1"]),
    ({"tp_size": 16}, ["needs 16 GPUs per node", "sglang_service_gpus_per_node is 8"]),
    ({"tp_size": 32, "ep_size": 2, "nnodes": 2, "dist_init_addr": "a:1"},
     ["needs 16 GPUs per node", "sglang_service_gpus_per_node"]),
    ({"tp_size": 8, "nnodes": 3, "dist_init_addr": "a:1"},
     ["does not split over 3 nodes", "sglang_service_tp_size to a multiple of 3 (e.g. 24)"]),
    ({"dp_size": 3, "dp_attention_enabled": True},
     ["tp 8 must be a multiple of dp 3", "sglang_service_dp_size"]),
    ({"dp_attention_enabled": True}, ["silently disabled", "sglang_service_dp_size > 1"]),
    ({"tp_size": 16, "dp_size": 2, "nnodes": 2, "dist_init_addr": "a:1"},
     ["requires dp-attention", "sglang_service_dp_attention_enabled: true"]),
    ({"ep_size": 3}, ["tp 8 must be a multiple of ep 3", "sglang_service_ep_size"]),
    ({"tp_size": 32, "nnodes": 4, "dist_init_addr": "a:1"},
     ["64-wide shards", "FP8 block 128", "sglang_service_ep_size to at least 2"]),
    ({"variant": "instruct", "reasoning_parser": "kimi_k2"},
     ["reasoning_content", "'auto' or 'none'"]),
    ({"reasoning_parser": "deepseek-r1"}, ["does not parse Kimi-K2 thinking output"]),
    ({"reasoning_parser": "none"}, ["returns its reasoning inside content"]),
    ({"tool_call_parser": "qwen"}, ["sglang_service_tool_call_parser 'qwen'"]),
    ({"served_model_name": "kimi:k2"}, ["contains ':'", "sglang_service_served_model_name"]),
    ({"context_length": 300000}, ["sglang_service_context_length 300000", "1..262144"]),
    ({"port": 70000}, ["sglang_service_port 70000"]),
    ({"nnodes": 2, "tp_size": 16, "dist_init_addr": ""}, ["sglang_service_cluster_address"]),
    ({"node_rank": 1}, ["node rank 1 is outside 0..0"]),
    ({"gpu_model": "A100"}, ["sglang_service_gpu_model 'A100' is unknown"]),
    ({"extra_args": ["--tp-size", "8"]}, ["sets --tp-size", "use sglang_service_tp_size"]),
    ({"extra_args": ["--quantization", "fp8"]}, ["config.json"]),
    ({"extra_args": ["--moe-a2a-backend", "deepep"]},
     ["sets --moe-a2a-backend", "use sglang_service_moe_a2a_backend"]),
    ({"extra_args": ["--enable-ep-moe"]}, ["--enable-ep-moe is not a flag of SGLang 0.5.6.post1"]),
    ({"extra_args": ["--enable-auto-tool-choice"]}, ["--enable-auto-tool-choice is not a flag"]),
    ({"extra_args": ["--cuda-graph-max"]}, ["abbreviation of --cuda-graph-max-bs"]),
    ({"extra_args": ["--cuda-graph-max-bs", "many"]}, ["--cuda-graph-max-bs expects int"]),
    ({"extra_args": ["--attention-backend", "magic"]}, ["--attention-backend 'magic' is not one of"]),
    ({"extra_args": ["--enable-torch-compile=yes"]}, ["--enable-torch-compile takes no value"]),
    ({"extra_args": ["--stream-interval"]}, ["--stream-interval expects one value"]),
    ({"extra_args": ["600"]}, ["stray argument '600'"]),
    ({"kv_cache_dtype": "int8"}, ["--kv-cache-dtype 'int8' is not one of"]),
]


@pytest.mark.parametrize("changes,words", RULES, ids=[str(c) for c, _ in RULES])
def test_every_rule_names_what_to_change(deployment, changes, words):
    problems = builder.sglang_launch_problems({**deployment, **changes})
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0]


def test_instruct_on_h100_names_the_smallest_layout_that_loads(deployment):
    problems = builder.sglang_launch_problems(
        {**deployment, "variant": "instruct", "gpu_model": "H100"})
    assert problems == [
        "moonshotai/Kimi-K2-Instruct does not fit: 119.8 GiB of weights per GPU at tp 8, "
        "but a H100 holds 74.1 GiB for weights (0.93 of 79.6 GiB); the smallest layout that "
        "loads is sglang_service_tp_size: 16 over 2 node(s) (sglang_service_deployment_group)"]


def test_a_low_memory_fraction_makes_instruct_tp8_refuse(deployment):
    problems = builder.sglang_launch_problems(
        {**deployment, "variant": "instruct", "mem_fraction_static": 0.8})
    assert len(problems) == 1 and "sglang_service_tp_size: 16" in problems[0]


def test_instruct_tp8_fits_an_h200_and_thinking_fits_with_room(deployment):
    assert builder.sglang_launch_problems({**deployment, "variant": "instruct"}) == []
    assert builder.sglang_launch_problems({**deployment, "mem_fraction_static": 0.6}) == []


def test_argv_filter_refuses_with_every_problem(deployment):
    with pytest.raises(builder.AnsibleFilterError, match="ep 3.*sglang_service_port 0"):
        builder.sglang_launch_argv({**deployment, "port": 0, "ep_size": 3})


def test_unknown_version_asks_for_a_manifest(deployment):
    with pytest.raises(builder.AnsibleFilterError, match="make manifest SGLANG_VERSION=9.9"):
        builder.sglang_launch_problems({**deployment, "sglang_version": "9.9"})


def test_manifest_accepts_every_declared_form():
    assert builder.argv_problems(
        ["--ep", "4", "--cuda-graph-bs", "1", "2", "4", "--watchdog-timeout=600",
         "--disable-radix-cache", "--hybrid-kvcache-ratio"], "0.5.6.post1") == []


@pytest.mark.parametrize("arg,quoted", [
    ("plain-value_1.0", "plain-value_1.0"),
    ('{"num_threads": 16}', '"{\\"num_threads\\": 16}"'),
    ("50%", "50%%"),
    ("$HOME", "$$HOME"),
    ("a b", '"a b"'),
    ("back\\slash", '"back\\\\slash"'),
])
def test_systemd_quoting(arg, quoted):
    assert builder.systemd_quote(arg) == quoted


def test_one_flag_per_line():
    assert builder.sglang_systemd_lines(
        ["--tp-size", "8", "--trust-remote-code", "--cuda-graph-bs", "1", "2"]) == [
        "--tp-size 8", "--trust-remote-code", "--cuda-graph-bs 1 2"]


# sglang_launch: what the role stores once per host as the sglang_service_launch fact.

def test_launch_fact_of_a_valid_deployment_holds_its_argv_and_defaults(deployment):
    two_nodes = {**deployment, "variant": "instruct", "tp_size": 16, "nnodes": 2,
                 "node_rank": 1}
    launch = builder.sglang_launch(two_nodes)
    assert launch["problems"] == []
    assert launch["argv"] == builder.sglang_launch_argv(two_nodes)
    resolved = launch["resolved"]
    assert (resolved["node_rank"], resolved["nnodes"], resolved["tp_size"]) == (1, 2, 16)
    assert resolved["served_model_name"] == "moonshotai/Kimi-K2-Instruct"
    assert (resolved["reasoning_parser"], resolved["tool_call_parser"]) == (None, "kimi_k2")


def test_launch_fact_of_a_broken_deployment_lists_its_problems_and_no_argv(deployment):
    broken = {**deployment, "port": 0, "ep_size": 3, "nnodes": 2, "node_rank": 1}
    launch = builder.sglang_launch(broken)
    assert launch["problems"] == builder.sglang_launch_problems(broken)
    assert len(launch["problems"]) == 2 and launch["argv"] == []
    # status.yml still shows the host's rank: the deployment as given, no defaults.
    assert (launch["resolved"]["node_rank"], launch["resolved"]["nnodes"]) == (1, 2)
    assert launch["resolved"]["served_model_name"] == ""


def test_launch_fact_reports_a_missing_manifest_as_a_problem(deployment):
    launch = builder.sglang_launch({**deployment, "sglang_version": "9.9"})
    assert launch["argv"] == []
    assert len(launch["problems"]) == 1
    assert "make manifest SGLANG_VERSION=9.9" in launch["problems"][0]
