"""The simulator's start checks for DeepEP and EPLB (issue 17) are SGLang's: DeepEP makes
ep span tp without refusing (SGLang adjusts it), EPLB without expert parallelism fails."""
from __future__ import annotations

import pytest

from sglang_sim import cli, rules, sim_versions

BASE = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "16", "--nnodes", "2",
        "--dist-init-addr", "10.0.0.1:50000"]


def _start_errors(argv, version):
    args = cli.parse(BASE + argv, version)
    return args, sim_versions.normalize(args, version) + rules.check(args)


@pytest.mark.parametrize("version", ["0.5.6.post1", "0.5.23"])
def test_deepep_sets_ep_to_tp_as_sglang_does(version, capsys):
    # 0.5.6.post1 server_args.py:1587-1595; 0.5.23 arg_groups/overrides.py:1611-1620.
    args, errors = _start_errors(["--ep-size", "8", "--moe-a2a-backend", "deepep",
                                  "--deepep-mode", "low_latency"], version)
    assert errors == []
    assert args.expert_parallel_size == 16
    assert "adjusted to be the same as the tensor parallel size[16]" in capsys.readouterr().out


@pytest.mark.parametrize("version", ["0.5.6.post1", "0.5.23"])
def test_eplb_without_expert_parallelism_fails_to_start(version):
    # 0.5.6.post1 server_args.py:1621-1622; 0.5.23 arg_groups/parallel_hook.py:790-791.
    _, errors = _start_errors(["--enable-eplb"], version)
    assert errors == ["--enable-eplb needs ep_size > 1"]
    _, errors = _start_errors(["--enable-eplb", "--ep-size", "16",
                               "--ep-num-redundant-experts", "32"], version)
    assert errors == []


def test_0_5_23_prefill_refuses_the_fake_transfer_backend():
    # 0.5.23 arg_groups/pd_disaggregation_hook.py:145-148; decode accepts it.
    from sglang_sim import disaggregation
    for mode, expected in (("prefill", ["Prefill server does not support 'fake' as the "
                                        "transfer backend"]), ("decode", [])):
        args = cli.parse(["--model-path", "m", "--disaggregation-mode", mode,
                          "--disaggregation-transfer-backend", "fake"], "0.5.23")
        assert disaggregation.check(args, "0.5.23") == expected
