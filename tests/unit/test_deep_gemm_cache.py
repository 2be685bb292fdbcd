"""The DeepGEMM compile cache (issue 16 item 4): its key, its completion marker (the
model-weights marker, reused), and the simulator's stand-in of SGLang's precompile entry
point (`sglang_sim.compile_deep_gemm`, a test double)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, builder, run_module

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


# ---------------------------------------------------------------- the role's building blocks
import grp  # noqa: E402
import pwd  # noqa: E402
import socket  # noqa: E402

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.kimi_k2.sglang.plugins.filter import deep_gemm_cache as flt  # noqa: E402
from ansible_collections.kimi_k2.sglang.plugins.modules import deep_gemm_cache as mod  # noqa: E402

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def test_batch_limits_do_not_split_a_layout():
    """A changed --max-running-requests (a rollout's flag) keeps the complete cache: the
    precompile covers every M up to a bound from --chunked-prefill-size alone."""
    key = dg.key(BASE, "0.5.6.post1", "H200")
    for change in (["--max-running-requests", "64"], ["--cuda-graph-max-bs", "128"],
                   ["--kv-cache-dtype", "fp8_e4m3"]):
        assert dg.key(BASE + change, "0.5.6.post1", "H200") == key


def test_the_precompile_gets_the_server_s_arguments_without_the_key_file_on_loopback():
    argv = BASE + ["--config", "/etc/sglang/secrets.yaml", "--served-model-name", "kimi"]
    out = dg.compile_argv(argv, 5400)
    assert "--config" not in out and "/etc/sglang/secrets.yaml" not in out
    assert out[-4:] == ["--host", "127.0.0.1", "--timeout", "5400"]
    assert out.count("--host") == 1 and "0.0.0.0" not in out
    assert out[:out.index("--host")] == [a for a in BASE if a not in ("--host", "0.0.0.0")] + [
        "--served-model-name", "kimi"]


def test_the_precompile_runs_as_a_bounded_unit_of_the_service_account():
    cmd = dg.compile_command(BASE, {
        "unit": "sglang-deep-gemm-compile", "user": "sglang", "group": "sglang",
        "environment_file": "/etc/sglang/sglang.env", "timeout": 3600,
        "python": "/opt/v/bin/python", "module": "sglang.compile_deep_gemm",
        "environment": {"SGLANG_DG_CACHE_DIR": "/var/lib/sglang/deep_gemm/k.partial", "A": 1}})
    assert cmd[:2] == ["systemd-run", "--unit"] and "--wait" in cmd and "--pipe" in cmd
    assert "User=sglang" in cmd and "EnvironmentFile=/etc/sglang/sglang.env" in cmd
    assert "RuntimeMaxSec=4500" in cmd
    assert "--setenv=SGLANG_DG_CACHE_DIR=/var/lib/sglang/deep_gemm/k.partial" in cmd
    i = cmd.index("/opt/v/bin/python")
    assert cmd[i:i + 3] == ["/opt/v/bin/python", "-m", "sglang.compile_deep_gemm"]
    assert cmd[-2:] == ["--timeout", "3600"]


def _member(host, group, rank, key="K", ready=False, due=True, nodes=2):
    return {"host": host, "group": group, "rank": rank, "nodes": nodes, "key": key,
            "ready": ready, "due": due}


FLEET = [_member("f1", "pair1", 0), _member("f2", "pair1", 1),
         _member("f3", "pair2", 0), _member("f4", "pair2", 1)]


def test_one_group_per_layout_builds_and_the_others_copy_rank_for_rank():
    plans = {m["host"]: dg.plan(FLEET, m["host"]) for m in FLEET}
    assert [plans[h]["action"] for h in ("f1", "f2")] == ["build", "build"]
    assert (plans["f3"]["action"], plans["f3"]["source"]) == ("copy", "f1")
    assert (plans["f4"]["action"], plans["f4"]["source"]) == ("copy", "f2")
    assert dg.copies(list(plans.values())) == [{"source": "f1", "key": "K"},
                                               {"source": "f2", "key": "K"}]


def test_a_complete_cache_anywhere_in_the_run_is_copied_not_built_again():
    """pair1 holds it (a later rollout batch, or a repaired host): pair2 copies."""
    members = [dict(m, ready=m["group"] == "pair1", due=m["group"] == "pair2") for m in FLEET]
    assert [dg.plan(members, h)["action"] for h in ("f1", "f2", "f3", "f4")] == [
        "none", "none", "copy", "copy"]
    # Only rank 0 of pair2 lost its cache: only it copies.
    members = [dict(m, ready=m["host"] != "f3") for m in FLEET]
    assert [dg.plan(members, h)["action"] for h in ("f1", "f2", "f3", "f4")] == [
        "none", "none", "copy", "none"]
    assert dg.plan(members, "f3")["source"] == "f1"


def test_another_key_is_another_layout():
    members = FLEET[:2] + [dict(m, key="K2") for m in FLEET[2:]]
    assert [dg.plan(members, h)["action"] for h in ("f1", "f2", "f3", "f4")] == ["build"] * 4
    assert dg.copies([dict(dg.plan(members, h), host=h) for h in ("f3", "f4")]) == []


def test_a_running_server_keeps_its_cache_and_a_ready_one_is_left_alone():
    members = [dict(m, due=False) for m in FLEET]
    assert {dg.plan(members, h)["action"] for h in ("f1", "f2", "f3", "f4")} == {"none"}


def test_a_build_group_must_be_whole_in_the_run():
    plan = dg.plan(FLEET[2:3], "f3")  # --limit fleet-3: rank 1 is not there
    assert plan["action"] == "fail" and "rank(s) 1 are not in this run" in plan["reason"]


def test_the_filters_name_the_variables_and_skip_hosts_without_a_state():
    assert flt.cache_plan([None] + FLEET, "f3")["action"] == "copy"
    with pytest.raises(AnsibleFilterError, match="sglang_service_gpu_model"):
        flt.cache_key(BASE, "0.5.6.post1", "")
    assert flt.cache_problems(True, "0.5.6.post1") == flt.cache_problems(False, "0.4.0") == []
    assert "sglang_service_deep_gemm_cache_enabled" in flt.cache_problems(True, "0.4.0")[0]


@pytest.mark.parametrize("version,venv", [("0.5.6.post1", ".venv-sglang"),
                                          ("0.5.23", ".venv-sglang-0.5.23")])
def test_the_pinned_versions_have_the_precompile_module_and_its_timeout_flag(version, venv):
    """Read from the real wheels (the venvs `make` builds): the module the role runs and the
    one flag it adds to the server's."""
    found = sorted((ROOT / venv).glob("lib/python3*/site-packages/sglang/compile_deep_gemm.py"))
    if not found:
        pytest.skip("%s is not built" % venv)
    text = found[0].read_text()
    entry = dg.COMPILE_ENTRY_POINTS[version]
    assert entry["module"] == "sglang.compile_deep_gemm"
    assert 'parser.add_argument("%s", type=int' % entry["timeout_flag"] in text
    assert "ServerArgs.add_cli_args(parser)" in text and "requests.get(f\"{base_url}/v1/models\"" in text
    assert (found[0].parents[1] / ("sglang-%s.dist-info" % version)).is_dir()


def test_the_module_marks_a_compiled_cache_and_puts_it_in_place(tmp_path, monkeypatch, capsys):
    staged = tmp_path / "K.partial"
    _fill(staged)
    args = {"root": str(tmp_path), "key": "K", "owner": ME, "group": MY_GROUP}
    assert run_module(mod.main, dict(args), monkeypatch, capsys)["complete"] is False
    result = run_module(mod.main, dict(args, state="compiled"), monkeypatch, capsys)
    assert result["changed"] and result["complete"] and not staged.exists()
    assert mw.read_marker(str(tmp_path / "K"))["source"] == "compile"
    assert run_module(mod.main, dict(args), monkeypatch, capsys)["complete"] is True


def test_the_module_refuses_an_incomplete_copy_and_leaves_it_out_of_place(tmp_path, monkeypatch, capsys):
    source = tmp_path / "src"
    _fill(source)
    dg.mark_complete(str(source), "K", "compile")
    staged = tmp_path / "root" / "K.partial"
    staged.parent.mkdir()
    os.rename(source, staged)
    (staged / "cache" / "kernel.a" / "kernel.cubin").write_text("x" * 4)  # cut short
    args = {"root": str(tmp_path / "root"), "key": "K", "state": "copied", "origin": "f1",
            "owner": ME, "group": MY_GROUP}
    result = run_module(mod.main, dict(args), monkeypatch, capsys)
    assert result["failed"] and "incomplete" in result["msg"] and "not used" in result["msg"]
    assert not (tmp_path / "root" / "K").exists()
    # Whole again, plus a file the source's marker does not list: in place, without it.
    (staged / "cache" / "kernel.a" / "kernel.cubin").write_text("x" * 10)
    (staged / "cache" / "half-written").write_text("?")
    result = run_module(mod.main, dict(args), monkeypatch, capsys)
    assert result["complete"] and not (tmp_path / "root" / "K" / "cache" / "half-written").exists()
    marker = mw.read_marker(str(tmp_path / "root" / "K"))
    assert (marker["source"], marker["origin"]) == ("copy", "f1")


def test_the_stand_in_will_not_compile_beside_a_running_server(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        argv = [a if a != "30000" else str(port) for a in BASE]
        argv[argv.index("--host") + 1] = "127.0.0.1"
        result = _compile(argv, tmp_path)
    assert result.returncode == 1 and "address already in use" in result.stderr.lower()
    assert not _files(tmp_path)


def test_the_stand_in_can_crash_like_a_dying_server(tmp_path):
    env = {"PYTHONPATH": str(SIM_SRC), "SGLANG_DG_CACHE_DIR": str(tmp_path),
           "SGLANG_SIM_DG_COMPILE_CRASH": "1"}
    result = subprocess.run([sys.executable, "-m", "sglang_sim.compile_deep_gemm", *BASE],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "compilation timeout" in result.stderr
    assert not _files(tmp_path)
