"""The simulator imitates the SGLang version it is asked to be (SGLANG_SIM_VERSION): that
version's parser, retired-flag habits, layout resolution, endpoints and parsers (issue 15).
tests/conformance compares both versions' behaviour here with the real parsers."""
import json
import os
import subprocess
import sys

import pytest

from sim_process import SIM_SRC
from test_simulator import sim_factory  # noqa: F401 (a fixture)

from sglang_sim import cli, parsers, sim_versions  # tools/sglang_sim/src (pytest.ini)

NEW = {"SGLANG_SIM_VERSION": "0.5.23"}
INSTRUCT = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "8",
            "--trust-remote-code"]


def run(argv, env=None, module="sglang_sim.launch_server"):
    return subprocess.run([sys.executable, "-m", module, *argv],
                          env={**os.environ, "PYTHONPATH": str(SIM_SRC),
                               "SGLANG_SIM_FAIL_AFTER_LOAD": "stop here", **(env or {})},
                          capture_output=True, text=True, timeout=30)


def test_each_version_is_its_own_committed_data():
    assert sim_versions.known() == ["0.5.23", "0.5.6.post1"]
    root = SIM_SRC.parents[1]
    for version in sim_versions.known():
        for suffix in (".json", ".rules.json"):
            committed = root.parent / "manifests" / "sglang" / f"{version}{suffix}"
            packaged = SIM_SRC / "sglang_sim" / "versions" / f"{version}{suffix}"
            assert json.loads(packaged.read_text()) == json.loads(committed.read_text())


def test_an_unknown_version_stops_the_start():
    result = run(INSTRUCT, {"SGLANG_SIM_VERSION": "0.4.0"})
    assert result.returncode != 0 and "'0.4.0' is not one of" in result.stderr


@pytest.mark.parametrize("argv,message", [
    (["--cuda-graph-max-bs", "8"], "ambiguous option: --cuda-graph-max-bs could match"),
    (["--enable-double-sparsity"], "unrecognized arguments: --enable-double-sparsity"),
])
def test_a_flag_0_5_23_removed_exits_2_with_argparses_words(argv, message):
    assert run([*INSTRUCT, *argv]).stderr.count("stop here") == 1  # fine on 0.5.6.post1
    result = run([*INSTRUCT, *argv], NEW)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_0_5_23_warns_for_launch_server_and_the_old_dp_attention_spelling():
    result = run([*INSTRUCT, "--dp-size", "4", "--enable-dp-attention"], NEW)
    assert result.returncode == 1 and "stop here" in result.stderr  # it started
    assert "'sglang serve' is the recommended entrypoint" in result.stderr
    assert ("'--enable-dp-attention' is deprecated and will be removed in a future release. "
            "Use '--attn-dp-size <dp-size>' instead.") in result.stderr
    assert "a test double of SGLang 0.5.23" in result.stdout
    served = run([*INSTRUCT, "--attn-dp-size", "4"], NEW, module="sglang_sim.serve")
    assert "recommended entrypoint" not in served.stderr and "deprecated" not in served.stderr
    assert "stop here" in served.stderr


def test_0_5_23_resolves_both_dp_attention_spellings_to_one_layout():
    old = cli.parse([*INSTRUCT, "--dp-size", "4", "--enable-dp-attention"], "0.5.23")
    new = cli.parse([*INSTRUCT, "--attn-dp-size", "4"], "0.5.23")
    assert sim_versions.normalize(old, "0.5.23") == sim_versions.normalize(new, "0.5.23") == []
    assert vars(old) == vars(new)
    assert (new.attn_dp_size, new.dp_size, new.data_parallel_size, new.enable_dp_attention) \
        == (4, 1, 4, True)
    both = cli.parse([*INSTRUCT, "--attn-dp-size", "4", "--dp-size", "2"], "0.5.23")
    assert "replicas combined with attention data parallelism" in \
        sim_versions.normalize(both, "0.5.23")[0]


def test_0_5_23_serves_ready_and_names_itself_and_0_5_6_post1_does_not(sim_factory):
    new = sim_factory([*INSTRUCT, "--api-key", "k"], env=NEW)
    assert new.request("/ready", key="")[0] == 200  # no key needed, like /health
    new.api_key = "k"
    assert new.json("/server_info")["version"] == "0.5.23"
    old = sim_factory(INSTRUCT, env={})
    assert old.request("/ready")[0] == 404
    assert old.json("/server_info")["version"] == "0.5.6.post1"


def test_the_kimi_k2_reasoning_parser_keeps_instructs_answer_only_on_0_5_23():
    assert parsers.split_reasoning("kimi_k2", "The answer is 36.", "0.5.6.post1") == (
        "The answer is 36.", "")
    assert parsers.split_reasoning("kimi_k2", "The answer is 36.", "0.5.23") == (
        "", "The answer is 36.")
