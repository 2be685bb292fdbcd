"""The DeepGEMM compile cache (issue 16 item 4): its key, its completion marker (the
model-weights marker, reused), and the simulator's stand-in of SGLang's precompile entry
point (`sglang_sim.compile_deep_gemm`, a test double)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, builder

from ansible_collections.kimi_k2.sglang.plugins.module_utils import deep_gemm_cache as dg
from ansible_collections.kimi_k2.sglang.plugins.module_utils import model_weights as mw

SIM_SRC = ROOT / "tools" / "sglang_sim" / "src"
BASE = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "16", "--nnodes", "2",
        "--node-rank", "0", "--dist-init-addr", "10.0.0.1:5000", "--trust-remote-code",
        "--host", "0.0.0.0", "--port", "30000"]


def test_the_key_names_version_gpu_and_layout():
    key = dg.key(BASE, "0.5.6.post1", "NVIDIA H200")
    assert key.startswith("sglang-0.5.6.post1_nvidia-h200_tp16-dp1-ep1-n2_")
    assert "/" not in key and " " not in key


def test_every_node_of_one_layout_gets_the_same_key():
    """Node rank, address, port and names are no part of the kernels: one cache per layout."""
    other_node = [a.replace("10.0.0.1:5000", "10.0.0.9:5000") for a in BASE]
    other_node[other_node.index("--node-rank") + 1] = "1"
    other_node += ["--served-model-name", "x", "--watchdog-timeout", "600"]
    assert dg.key(other_node, "0.5.6.post1", "NVIDIA H200") == dg.key(BASE, "0.5.6.post1", "NVIDIA H200")


@pytest.mark.parametrize("change", [
    ["--ep-size", "16"], ["--dp-size", "8", "--enable-dp-attention"],
    ["--moe-a2a-backend", "deepep"], ["--chunked-prefill-size", "8192"],
])
def test_a_changed_layout_gets_a_new_key(change):
    assert dg.key(BASE + change, "0.5.6.post1", "NVIDIA H200") != dg.key(BASE, "0.5.6.post1", "NVIDIA H200")


def test_a_changed_version_or_gpu_gets_a_new_key():
    key = dg.key(BASE, "0.5.6.post1", "NVIDIA H200")
    assert dg.key(BASE, "0.5.23", "NVIDIA H200") != key
    assert dg.key(BASE, "0.5.6.post1", "NVIDIA H100 80GB HBM3") != key


def test_the_builder_s_argv_gives_one_key_per_layout(deployment):
    """The launch builder's own argv: both ranks of a 2-node group share a key; another
    profile (another layout) gets another."""
    group = {**deployment, "variant": "instruct", "tp_size": 16, "nnodes": 2,
             "dist_init_addr": "10.0.0.1:50000"}
    rank0 = builder.sglang_launch_argv({**group, "node_rank": 0})
    rank1 = builder.sglang_launch_argv({**group, "node_rank": 1})
    key = dg.key(rank0, "0.5.6.post1", "NVIDIA H200")
    assert "_tp16-dp1-ep1-n2_" in key and dg.key(rank1, "0.5.6.post1", "NVIDIA H200") == key
    throughput = builder.sglang_launch_argv({**group, "node_rank": 0, "profile": "throughput"})
    assert dg.key(throughput, "0.5.6.post1", "NVIDIA H200") != key


@pytest.mark.parametrize("version,gpu", [("", "NVIDIA H200"), ("0.5.6.post1", " ")])
def test_an_empty_version_or_gpu_model_is_refused(version, gpu):
    with pytest.raises(ValueError):
        dg.key(BASE, version, gpu)


def _fill(directory):
    os.makedirs(directory / "cache" / "kernel.a")
    (directory / "cache" / "kernel.a" / "kernel.cubin").write_text("x" * 10)


def test_a_cache_without_the_marker_is_incomplete(tmp_path):
    _fill(tmp_path)
    complete, reason = dg.is_complete(str(tmp_path), "k1")
    assert not complete and "no marker" in reason


def test_a_marked_cache_is_complete_for_its_key_only(tmp_path):
    _fill(tmp_path)
    dg.mark_complete(str(tmp_path), "k1", "compile")
    assert dg.is_complete(str(tmp_path), "k1")[0]
    assert not dg.is_complete(str(tmp_path), "k2")[0]
    # The model-weights marker itself, not a second kind.
    assert mw.read_marker(str(tmp_path))["repo_id"] == dg.DEEPGEMM_REPO


def test_a_marked_cache_that_lost_a_file_is_incomplete(tmp_path):
    _fill(tmp_path)
    dg.mark_complete(str(tmp_path), "k1", "compile")
    (tmp_path / "cache" / "kernel.a" / "kernel.cubin").write_text("x")
    assert not dg.is_complete(str(tmp_path), "k1")[0]


def _compile(argv, cache_dir, seconds="0"):
    env = {"PYTHONPATH": str(SIM_SRC), "SGLANG_DG_CACHE_DIR": str(cache_dir),
           "SGLANG_SIM_DG_COMPILE_SECONDS": seconds}
    return subprocess.run([sys.executable, "-m", "sglang_sim.compile_deep_gemm", *argv],
                          env=env, capture_output=True, text=True, timeout=30)


def _files(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_the_stand_in_writes_a_cache_derived_from_the_layout(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert _compile(BASE + ["--timeout", "60"], one).returncode == 0
    assert _compile(BASE + ["--ep-size", "16"], two).returncode == 0
    assert _files(one) and _files(two) and _files(one) != _files(two)
    again = tmp_path / "again"
    assert _compile(BASE, again).returncode == 0
    assert _files(again) == _files(one)


def test_the_stand_in_refuses_a_flag_the_server_lacks(tmp_path):
    result = _compile(BASE + ["--no-such-flag"], tmp_path)
    assert result.returncode == 2 and not _files(tmp_path)


def test_the_stand_in_times_out_like_sglang(tmp_path):
    result = _compile(BASE + ["--timeout", "1"], tmp_path, seconds="5")
    assert result.returncode == 1
    assert "DeepGEMM Kernels compilation timeout." in result.stderr
    assert not _files(tmp_path)
