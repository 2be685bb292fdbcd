"""Rendered commands against SGLang's REAL parser (pinned version, parse only, no GPU).

Needs the SGLang venv (`make conformance` builds it): SGLANG_PYTHON points at its Python.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, builder

from sglang_sim import cli as sim_cli  # tools/sglang_sim/src, on the path (pytest.ini)

SGLANG_PYTHON = os.environ.get("SGLANG_PYTHON", str(ROOT / ".venv-sglang" / "bin" / "python"))
VERSION = "0.5.6.post1"

# The published Kimi-K2-Instruct commands (SGLang's Kimi-K2 cookbook), flags as written.
PUBLISHED = {
    "tp8": "--model-path moonshotai/Kimi-K2-Instruct --tp 8 --trust-remote-code "
           "--host 0.0.0.0 --port 30000",
    "latency": "--model-path moonshotai/Kimi-K2-Instruct --tp 8 --dp 4 --enable-dp-attention "
               "--trust-remote-code --host 0.0.0.0 --port 30000",
    "throughput": "--model-path moonshotai/Kimi-K2-Instruct --tp 8 --dp 4 --ep 4 "
                  "--enable-dp-attention --trust-remote-code --host 0.0.0.0 --port 30000",
}


def real_parse(argvs: list[list[str]]) -> list[dict]:
    if not Path(SGLANG_PYTHON).exists():
        pytest.fail(f"no SGLang venv at {SGLANG_PYTHON}: run `make conformance`")
    out = subprocess.run([SGLANG_PYTHON, str(Path(__file__).with_name("real_parser.py"))],
                         input=json.dumps(argvs), capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _ours(profile: str) -> list[str]:
    return builder.sglang_launch_argv({
        "sglang_version": VERSION, "variant": "instruct", "profile": profile,
        "gpu_model": "H200", "gpus_per_node": 8, "host": "0.0.0.0", "port": 30000})


def plan_argvs(out: Path, *extra: str) -> dict[str, list[str]]:
    """Every host's argv from plan.yml over both example inventories, written under out:
    the checkout's plan/ is test_plan.py's (integration), which runs beside this suite."""
    argvs = {}
    for inventory in ("production", "demo"):
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", f"inventories/{inventory}",
             "playbooks/plan.yml", "-e", "vault_sglang_service_api_key=conformance", *extra,
             "-e", f"sglang_service_plan_dir={out}/{inventory}/{{{{ inventory_hostname }}}}",
             "-e", f"sglang_router_plan_dir={out}/{inventory}/{{{{ inventory_hostname }}}}"],
            cwd=ROOT, check=True, capture_output=True,
            env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
        for plan in sorted((out / inventory).glob("*/argv.json")):
            argvs[f"{inventory}/{plan.parent.name}"] = json.loads(plan.read_text())["argv"]
    assert len(argvs) == 14  # the production example's 12 hosts (6 PD ones) and demo's 2
    return argvs


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[str]]:
    return plan_argvs(tmp_path_factory.mktemp("plan"))


@pytest.fixture(scope="module")
def parsed(rendered) -> dict[str, dict]:
    """One run of the real parser (importing SGLang takes seconds) over every case."""
    cases = {f"host:{h}": argv for h, argv in rendered.items()}
    cases.update({f"published:{p}": PUBLISHED[p].split() for p in PUBLISHED})
    cases.update({f"ours:{p}": _ours(p) for p in PUBLISHED})
    cases["defaults"] = ["--model-path", "x"]
    cases["removed"] = ["--model-path", "m", "--enable-ep-moe"]
    return {name: {**result, "argv": cases[name]}
            for name, result in zip(cases, real_parse(list(cases.values())))}


def test_every_rendered_command_parses_with_the_real_parser(parsed):
    failures = {k: r["error"] for k, r in parsed.items() if k.startswith("host:") and not r["ok"]}
    assert failures == {}


def test_the_simulator_parses_exactly_like_sglang(parsed):
    parser = sim_cli.build_parser(sim_cli.manifest())
    for name, real in parsed.items():
        if real["ok"]:
            simulated = json.loads(json.dumps(vars(parser.parse_args(real["argv"])),
                                              default=repr))
            assert simulated == real["args"], name


def test_harness_can_fail_on_a_removed_flag(parsed):
    assert not parsed["removed"]["ok"] and "--enable-ep-moe" in parsed["removed"]["error"]


@pytest.mark.parametrize("profile", sorted(PUBLISHED))
def test_profiles_match_the_published_commands(parsed, profile):
    published = parsed[f"published:{profile}"]["args"]
    ours = parsed[f"ours:{profile}"]["args"]
    defaults = parsed["defaults"]["args"]
    set_by_published = {k for k, v in published.items() if v != defaults[k]}
    assert set_by_published >= {"model_path", "tensor_parallel_size", "trust_remote_code",
                                "host"}
    for dest in set_by_published:
        assert ours[dest] == published[dest], dest
    # Anything else ours sets comes from a documented default: the variant's tool-call
    # parser and the served name.
    extra = {k for k, v in ours.items() if v != defaults[k]} - set_by_published
    assert extra == {"served_model_name", "tool_call_parser"}


def test_committed_manifest_is_what_the_real_parser_says():
    generated = subprocess.run([SGLANG_PYTHON, str(ROOT / "tools" / "gen_sglang_manifest.py")],
                               capture_output=True, text=True, check=True).stdout
    committed = (ROOT / "manifests" / "sglang" / f"{VERSION}.json").read_text()
    assert json.loads(generated) == json.loads(committed)


def test_the_simulator_parses_kimi_output_as_every_real_parser_does():
    """Each --reasoning-parser and --tool-call-parser name the pinned version accepts
    treats Kimi-K2's raw output in the simulator as in SGLang: a known but wrong name
    fails verification there as it would on a GPU host (issue 14, fault 8)."""
    from sglang_sim import parsers
    from sglang_sim.answers import kimi_tool_markup
    texts = ["<think>Let me reason.</think>The answer is 36.", "The answer is 36.",
             "<think>Cut off before the end", ""]
    call = {"id": "functions.get_weather:0", "index": 0, "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Beijing"}'}}
    request = {"texts": texts, "tool_text": kimi_tool_markup([call])}
    out = subprocess.run([SGLANG_PYTHON, str(Path(__file__).with_name("real_chat_parsers.py"))],
                         input=json.dumps(request), capture_output=True, text=True, check=True)
    real = json.loads(out.stdout)
    assert set(real["reasoning"]) == parsers.known_reasoning_parsers()
    for name, results in real["reasoning"].items():
        assert [list(parsers.split_reasoning(name, t)) for t in texts] == results, name
    assert {name for name, found in real["tool_calls"].items() if found} == {
        parsers.KIMI_TOOL_CALL_PARSER}


# The production example's disaggregated deployment (issue 17): a prefill node and a decode
# node, as SGLang's real parser reads them.
PD_HOSTS = {"host:production/h200-p01": "prefill", "host:production/h200-d01": "decode"}


def test_the_pd_commands_parse_to_the_blog_layout(parsed):
    for name, mode in PD_HOSTS.items():
        args = parsed[name]["args"]
        assert parsed[name]["ok"] and args["disaggregation_mode"] == mode, name
        assert args["disaggregation_transfer_backend"] == "mooncake"
        assert args["disaggregation_ib_device"].startswith("mlx5_0,mlx5_1,")
        assert args["moe_a2a_backend"] == "deepep" and args["enable_eplb"] is True
        # DeepEP spans every rank: ep = tp, which SGLang would otherwise impose itself.
        assert args["expert_parallel_size"] == args["tensor_parallel_size"]
        assert args["enable_dp_attention"] is True
        assert args["ep_num_redundant_experts"] == 32
    prefill = parsed["host:production/h200-p01"]["args"]
    decode = parsed["host:production/h200-d01"]["args"]
    assert prefill["disaggregation_bootstrap_port"] == 8998 and prefill["deepep_mode"] == "normal"
    assert (prefill["tensor_parallel_size"], prefill["data_parallel_size"]) == (16, 16)
    assert (decode["tensor_parallel_size"], decode["data_parallel_size"]) == (32, 32)
    assert decode["deepep_mode"] == "low_latency"
    # server_args.py:1868-1873: a decode with dp > 1 starts only with it.
    assert decode["prefill_round_robin_balance"] is True
    assert prefill["prefill_round_robin_balance"] is False


def test_the_simulator_starts_the_pd_commands(parsed):
    """The simulator's start checks (its imitation of ServerArgs') pass the PD commands."""
    from sglang_sim import disaggregation, rules, sim_versions
    parser = sim_cli.build_parser(sim_cli.manifest(VERSION))
    for name in PD_HOSTS:
        args = parser.parse_args(parsed[name]["argv"])
        assert sim_versions.normalize(args, VERSION) + rules.check(args) \
            + disaggregation.check(args, VERSION) == [], name
