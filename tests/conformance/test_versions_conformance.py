"""SGLang 0.5.23 beside 0.5.6.post1 (issue 15), against both REAL parsers (parse only).

SGLANG_PYTHON is 0.5.6.post1's venv, SGLANG_NEXT_PYTHON 0.5.23's (`make conformance`
builds both). Every example inventory is rendered for 0.5.23 and parsed by 0.5.23's
parser; the published Kimi-K2 commands and ours go through both versions and their parsed
namespaces are compared field by field, each difference listed with its reason.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, builder
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_versions

from sglang_sim import cli as sim_cli  # tools/sglang_sim/src, on the path (pytest.ini)
from sglang_sim import parsers as sim_parsers

from test_parser_conformance import PUBLISHED, SGLANG_PYTHON, plan_argvs

OLD, NEW = "0.5.6.post1", "0.5.23"
PYTHON = {OLD: SGLANG_PYTHON,
          NEW: os.environ.get("SGLANG_NEXT_PYTHON",
                              str(ROOT / f".venv-sglang-{NEW}" / "bin" / "python"))}
HERE = Path(__file__).parent

# Where the same deployment reads differently in 0.5.23, and why. Checked below: each
# listed field must differ exactly so, every other field must be equal.
LAYOUT_DIFFERENCES = {
    "dp_size": "0.5.23 counts model replicas with --dp-size; the attention-DP width moved to "
               "attn_dp_size (sglang/srt/arg_groups/parallel_hook.py:39-61): 1 on 0.5.23 "
               "where 0.5.6.post1 had the width",
    "enable_dp_attention": "deprecated in 0.5.23 and cleared by resolution "
                           "(parallel_hook.py:59-61); attention DP is attn_dp_size > 1",
}


def real(version: str, script: str, payload) -> object:
    python = PYTHON[version]
    if not Path(python).exists():
        pytest.fail(f"no SGLang {version} venv at {python}: run `make conformance`")
    out = subprocess.run([python, str(HERE / script)], input=json.dumps(payload),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _ours(profile: str, version: str) -> list[str]:
    return builder.sglang_launch_argv({
        "sglang_version": version, "variant": "instruct", "profile": profile,
        "gpu_model": "H200", "gpus_per_node": 8, "host": "0.0.0.0", "port": 30000})


@pytest.fixture(scope="module")
def rendered_new(tmp_path_factory) -> dict[str, list[str]]:
    """Every host's argv from plan.yml over both example inventories, pinned to 0.5.23."""
    return plan_argvs(tmp_path_factory.mktemp("plan"), "-e", f"sglang_version={NEW}")


@pytest.fixture(scope="module")
def parsed(rendered_new) -> dict[str, dict]:
    """One run of each real parser over its cases."""
    cases = {NEW: {f"host:{h}": argv for h, argv in rendered_new.items()}, OLD: {}}
    for profile, command in PUBLISHED.items():
        for version in (OLD, NEW):
            cases[version][f"published:{profile}"] = command.split()
            cases[version][f"ours:{profile}"] = _ours(profile, version)
    for version in (OLD, NEW):
        cases[version]["defaults"] = ["--model-path", "x"]
    cases[NEW]["removed"] = ["--model-path", "m", "--cuda-graph-max-bs", "8"]
    return {version: {name: {**result, "argv": argv} for (name, argv), result in
                      zip(cases[version].items(),
                          real(version, "real_parser.py", list(cases[version].values())))}
            for version in (OLD, NEW)}


def test_committed_0_5_23_manifest_is_what_its_real_parser_says():
    generated = subprocess.run([PYTHON[NEW], str(ROOT / "tools" / "gen_sglang_manifest.py")],
                               capture_output=True, text=True, check=True).stdout
    committed = (ROOT / "manifests" / "sglang" / f"{NEW}.json").read_text()
    assert json.loads(generated) == json.loads(committed)
    assert json.loads(generated)["sglang_version"] == NEW


def test_every_example_inventory_parses_with_0_5_23s_real_parser(parsed, rendered_new):
    failures = {k: r["error"] for k, r in parsed[NEW].items()
                if k.startswith("host:") and not r["ok"]}
    assert failures == {}
    # The layout flags are 0.5.23's spelling, not the deprecated one.
    assert not any("--enable-dp-attention" in argv for argv in rendered_new.values())


def test_the_0_5_23_harness_can_fail_on_a_removed_flag(parsed):
    removed = parsed[NEW]["removed"]
    assert not removed["ok"] and "ambiguous option: --cuda-graph-max-bs" in removed["error"]


def test_the_simulator_parses_exactly_like_0_5_23(parsed):
    parser = sim_cli.build_parser(sim_cli.manifest(NEW))
    for name, result in parsed[NEW].items():
        if result["ok"]:
            simulated = json.loads(json.dumps(vars(parser.parse_args(result["argv"])),
                                              default=repr))
            assert simulated == result["args"], name


def _new_dest(old_dest: str) -> str:
    """The 0.5.23 field that the 0.5.6.post1 field's flag sets (dests were renamed:
    tensor_parallel_size -> tp_size ...)."""
    old = [o for o in sglang_versions.manifest(OLD)["options"] if o["dest"] == old_dest][0]
    new = sglang_versions.options(NEW)
    return next(new[flag]["dest"] for flag in old["opts"] if flag in new)


@pytest.mark.parametrize("profile", sorted(PUBLISHED))
def test_published_profiles_mean_the_same_on_both_versions(parsed, profile):
    """The published command on 0.5.6.post1 against ours for 0.5.23 on 0.5.23 (and the
    published one on 0.5.23): field by field, after 0.5.23's resolution of the retired
    dp-attention spelling; the only differences are LAYOUT_DIFFERENCES."""
    old = parsed[OLD][f"published:{profile}"]["args"]
    old_defaults = parsed[OLD]["defaults"]["args"]
    ours_new = parsed[NEW][f"ours:{profile}"]
    published_new = parsed[NEW][f"published:{profile}"]
    assert ours_new["ok"] and published_new["ok"]
    assert ours_new["resolved"] == published_new["resolved"]  # both spellings, one layout
    new = {**ours_new["args"], **ours_new["resolved"]}
    differences = {}
    for dest, value in old.items():
        if value == old_defaults[dest]:
            continue
        new_dest = _new_dest(dest)
        if new[new_dest] != value:
            differences[new_dest] = (value, new[new_dest])
    dp_attention = old["enable_dp_attention"]
    expected = ({"dp_size": (old["data_parallel_size"], 1), "enable_dp_attention": (True, False)}
                if dp_attention else {})
    assert differences == expected, LAYOUT_DIFFERENCES
    # The width did not get lost: it is attn_dp_size now.
    assert new["attn_dp_size"] == (old["data_parallel_size"] if dp_attention else 1)
    assert new["tp_size"] == old["tensor_parallel_size"] == 8


def test_the_simulator_parses_kimi_output_as_every_real_0_5_23_parser_does():
    """As test_parser_conformance's test of the same name, for 0.5.23. Names whose detector
    cannot be built bare are marked "unverified" in the rules and listed here."""
    from sglang_sim.answers import kimi_tool_markup
    texts = ["<think>Let me reason.</think>The answer is 36.", "The answer is 36.",
             "<think>Cut off before the end", ""]
    call = {"id": "functions.get_weather:0", "index": 0, "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Beijing"}'}}
    result = real(NEW, "real_chat_parsers.py",
                  {"texts": texts, "tool_text": kimi_tool_markup([call])})
    table = sglang_versions.rules(NEW)["reasoning_parsers"]
    unverified = {name for name, d in table.items() if d.get("unverified")}
    assert unverified == {"response_template"}
    assert set(result["reasoning"]) == sim_parsers.known_reasoning_parsers(NEW)
    for name, results in result["reasoning"].items():
        if name in unverified:
            assert isinstance(results, str), name  # still cannot be built bare
            continue
        assert [list(sim_parsers.split_reasoning(name, t, NEW)) for t in texts] == results, \
            name
    found = {name for name, n in result["tool_calls"].items() if isinstance(n, int) and n > 0}
    assert found == {sim_parsers.KIMI_TOOL_CALL_PARSER}


def test_the_pd_commands_parse_with_0_5_23s_real_parser(parsed):
    """Issue 17: the example's prefill and decode nodes, rendered for 0.5.23 and read by its
    parser (and its resolution of the layout)."""
    prefill = parsed[NEW]["host:production/h200-p01"]
    decode = parsed[NEW]["host:production/h200-d01"]
    assert prefill["ok"] and decode["ok"]
    assert prefill["args"]["disaggregation_mode"] == "prefill"
    assert prefill["args"]["disaggregation_bootstrap_port"] == 8998
    assert decode["args"]["disaggregation_mode"] == "decode"
    for result in (prefill, decode):
        assert result["args"]["moe_a2a_backend"] == "deepep"
        assert result["args"]["enable_eplb"] is True
        assert result["args"]["disaggregation_ib_device"].startswith("mlx5_0,")
        layout = result["resolved"]
        assert layout["ep_size"] == layout["tp_size"] == layout["attn_dp_size"]
    assert prefill["resolved"]["tp_size"] == 16 and decode["resolved"]["tp_size"] == 32
    # 0.5.23 has no --prefill-round-robin-balance: the builder leaves it out.
    assert "--prefill-round-robin-balance" not in decode["argv"]
