"""model_weights: what a complete copy is, the settings rules, and the modules on a real
directory (run through `ansible localhost -m`, as a play would run them)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from conftest import ROOT

from ansible_collections.kimi_k2.sglang.plugins.filter import model_weights as filters
from ansible_collections.kimi_k2.sglang.plugins.module_utils import model_weights as mw
from ansible_collections.kimi_k2.sglang.plugins.modules import model_weights_run
from make_test_model import write_model  # tests/weights_standins, on the path (pytest.ini)

REPO, REV = "kimi-test/Kimi-K2-Tiny", "4b1d2c3e5f60718293a4b5c6d7e8f90112233445"
SHARD = "model-00001-of-00003.safetensors"


@pytest.fixture
def model(tmp_path):
    directory = tmp_path / "model"
    write_model(directory, shards=3, shard_bytes=64 << 10, seed=1)
    return directory


@pytest.fixture
def manifest(model):
    found, problems = mw.manifest_from_directory(str(model), REPO, REV)
    assert problems == []
    return found


def module(name: str, **args) -> dict:
    """Run one of our modules on localhost and return its JSON result."""
    run = subprocess.run(["ansible", "localhost", "-m", f"kimi_k2.sglang.{name}", "-a", json.dumps(args), "-o"],
                         capture_output=True, text=True, env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg")))
    head, _, body = run.stdout.partition(" => ")
    result = json.loads(body)
    result["_failed"] = "FAILED" in head
    return result


# ---- A shard's size comes from its own header ----------------------------------------

def test_a_shard_size_is_read_from_its_header(model):
    path = model / SHARD
    assert mw.safetensors_size(str(path)) == path.stat().st_size


def test_a_truncated_shard_is_shorter_than_its_header_says(model):
    path = model / SHARD
    size = path.stat().st_size
    os.truncate(path, size - 100)
    assert mw.safetensors_size(str(path)) == size


@pytest.mark.parametrize("content,reason", [(b"\x01\x00", "8-byte"), (b"\x10" + b"\x00" * 7 + b"{", "cut short"),
                                            (b"\x02" + b"\x00" * 7 + b"{[", "not JSON")])
def test_a_broken_header_is_an_error(tmp_path, content, reason):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=reason):
        mw.safetensors_size(str(path))


# ---- A mirror without a marker is listed and checked against its index ---------------

def test_a_complete_mirror_lists_every_file_with_its_size(model, manifest):
    assert {f["path"]: f["size"] for f in manifest["files"]} == {
        p.name: p.stat().st_size for p in model.iterdir()}


def test_an_incomplete_mirror_names_what_is_missing_or_short(model):
    (model / "model-00002-of-00003.safetensors").unlink()
    os.truncate(model / SHARD, 4096)
    _manifest, problems = mw.manifest_from_directory(str(model), REPO, REV)
    assert "model-00002-of-00003.safetensors (named in the index) is missing" in problems
    assert any(p.startswith(SHARD + " is 4096 bytes, its header says") for p in problems)


def test_a_mirror_without_an_index_is_refused(model):
    (model / mw.INDEX).unlink()
    assert mw.manifest_from_directory(str(model), REPO, REV)[1] == [f"{mw.INDEX} is missing"]


# ---- A copy against its manifest -------------------------------------------------------

def test_a_complete_copy_has_nothing_wrong(model, manifest):
    state = mw.check(str(model), manifest)
    assert (state["missing"], state["short"], state["bad"]) == ([], [], [])
    assert state["present_bytes"] == sum(f["size"] for f in manifest["files"])


def test_missing_short_long_and_corrupt_files_are_told_apart(model, manifest):
    (model / "config.json").unlink()
    os.truncate(model / SHARD, 100)
    with open(model / "model-00002-of-00003.safetensors", "ab") as f:
        f.write(b"extra")
    third = model / "model-00003-of-00003.safetensors"
    data = bytearray(third.read_bytes())
    data[0] ^= 0xFF  # same size, header length now absurd
    third.write_bytes(bytes(data))
    state = mw.check(str(model), manifest)
    assert state["missing"] == ["config.json"]
    assert state["short"] == [SHARD]
    assert [b["path"] for b in state["bad"]] == ["model-00002-of-00003.safetensors",
                                                 "model-00003-of-00003.safetensors"]


def test_sha256_is_compared_only_when_asked(model, manifest):
    entry = next(f for f in manifest["files"] if f["path"] == "config.json")
    entry["sha256"] = "0" * 64
    assert mw.check(str(model), manifest)["bad"] == []
    assert mw.check(str(model), manifest, sha256=True)["bad"] == [
        {"path": "config.json", "reason": "sha256 differs from the source's"}]


def test_an_index_naming_a_shard_the_source_lacks_is_wrong(model, manifest):
    manifest["files"] = [f for f in manifest["files"] if f["path"] != SHARD]
    assert {"path": mw.INDEX, "reason": f"names {SHARD}, which the source lacks"} in \
        mw.check(str(model), manifest)["bad"]


# ---- The marker: the cheap check of a verified copy -------------------------------------

def test_the_marker_is_valid_only_for_its_revision_and_sizes(model, manifest):
    assert mw.marker_is_valid(str(model), REPO, REV)[0] is False
    mw.write_marker(str(model), manifest, "path", False)
    assert mw.marker_is_valid(str(model), REPO, REV)[0] is True
    assert mw.marker_is_valid(str(model), REPO, "f" * 40) == (False, f"the marker is for {REPO}@{REV}")
    os.truncate(model / SHARD, 10)
    assert mw.marker_is_valid(str(model), REPO, REV) == (
        False, f"{SHARD} is missing or has the wrong size")


def test_the_marker_and_private_state_are_not_part_of_the_model(model, manifest):
    mw.write_marker(str(model), manifest, "hub", False)
    (model / ".cache" / "huggingface").mkdir(parents=True)
    (model / ".cache" / "huggingface" / "x.incomplete").write_bytes(b"12345")
    assert set(mw.local_files(str(model))) == {f["path"] for f in manifest["files"]}
    assert mw.bytes_on_disk(str(model)) > manifest_bytes(manifest) + 5


def manifest_bytes(manifest):
    return sum(f["size"] for f in manifest["files"])


# ---- Progress and parallel streams ------------------------------------------------------

def test_progress_gives_rate_and_eta_from_the_bytes_moved_since_start():
    p = mw.progress(done=600, total=1000, elapsed=10, start_done=100)
    assert (p["rate_bytes"], p["eta"]) == (50, 8)
    assert mw.progress(100, 1000, 0, 100)["eta"] is None


def test_streams_split_files_evenly_by_bytes_and_cover_each_once():
    files = [{"path": f"s{i}", "size": size} for i, size in enumerate([90, 80, 50, 40, 30, 10])]
    streams = mw.split_streams(files, 3)
    assert sorted(sum(streams, [])) == sorted(f["path"] for f in files)
    loads = [sum(f["size"] for f in files if f["path"] in s) for s in streams]
    assert max(loads) - min(loads) <= 30
    assert len(mw.split_streams(files[:2], 8)) == 2


def test_a_progress_line_reads_like_a_person_wrote_it():
    line = filters.model_weights_progress_line({
        "method": "hub", "state": "running", "done_bytes": 12 << 30, "total_bytes": 958 << 30,
        "rate_bytes": 850 << 20, "eta": 1140, "elapsed": 15})
    assert line == "hub running: 12.0 GiB of 958.0 GiB (1%), 850.0 MiB/s, ETA 19 min, 15 s elapsed"
    assert filters.model_weights_progress_line({"method": "rsync", "state": "finished", "done_bytes": 1024,
                                                "total_bytes": 1024, "rate_bytes": 512, "eta": 0,
                                                "elapsed": 2}) == "rsync finished: 1.0 KiB of 1.0 KiB (100%), 512.0 B/s, 2 s elapsed"


# ---- Settings rules ---------------------------------------------------------------------

def settings(**over):
    base = {"repo_id": REPO, "revision": REV, "source": "hub", "peer": "", "path": "",
            "free_space_margin_gib": 50, "peer_streams": 4, "peer_fanout": 1, "hub_max_workers": 8,
            "progress_interval": 30, "timeout": 86400, "follow_timeout": 1800}
    return {"__model_weights_settings": dict(base, **over)}


def problems(hostvars, me="a"):
    return filters.model_weights_problems(me, hostvars, list(hostvars))


def test_good_settings_have_no_problems():
    assert problems({"a": settings(), "b": settings(source="peer", peer="a")}, "b") == []


@pytest.mark.parametrize("over,expected", [
    ({"revision": "main"}, "model_weights_revision must be the full 40-character commit sha"),
    ({"repo_id": "Kimi-K2-Instruct"}, "model_weights_repo_id must be a Hub repository id"),
    ({"source": "nfs"}, "model_weights_source must be one of hub, peer, path"),
    ({"source": "path", "path": "mirror/kimi"}, "set model_weights_path to the absolute path"),
    ({"source": "peer", "peer": "a"}, "model_weights_peer names this host itself"),
    ({"source": "peer", "peer": "z"}, "set model_weights_peer to a host of this play"),
    ({"free_space_margin_gib": -1}, "model_weights_free_space_margin_gib must be a whole number >= 0"),
    ({"peer_streams": "many"}, "model_weights_peer_streams must be a whole number >= 1"),
    ({"peer_fanout": 0}, "model_weights_peer_fanout must be a whole number >= 1, got 0"),
])
def test_bad_settings_name_the_variable_and_the_fix(over, expected):
    found = problems({"a": settings(**over)})
    assert len(found) == 1 and expected in found[0], found


def test_a_peer_must_copy_the_same_revision_from_a_host_that_does_not_copy_itself():
    hostvars = {"a": settings(source="peer", peer="c"), "b": settings(source="peer", peer="a", revision="f" * 40),
                "c": settings()}
    found = problems(hostvars, "b")
    assert any("copies from a peer itself" in p for p in found)
    assert any("peers copy the same revision" in p for p in found)


def test_a_peer_shares_the_fanout_of_its_tree():
    hostvars = {"a": settings(peer_fanout=2), "b": settings(source="peer", peer="a")}
    assert problems(hostvars, "b") == [
        "model_weights_peer_fanout is 1 here but 2 on model_weights_peer a: the hosts of one copy "
        "tree share it; set it for the whole group"]


def test_every_host_of_a_tree_may_copy_from_every_other():
    hostvars = {"a": settings(), "b": settings(source="peer", peer="a"), "c": settings(source="peer", peer="a"),
                "d": settings(source="path", path="/mnt/m", peer="a"), "e": settings(source="peer", peer="d")}
    assert filters.model_weights_peers_of(hostvars, list(hostvars), "a") == ["b", "c"]
    assert filters.model_weights_peers_of(hostvars, list(hostvars), "c") == ["a", "b"]
    assert filters.model_weights_peers_of(hostvars, list(hostvars), "d") == ["e"]


# ---- The copy tree: who copies from whom, wave by wave ------------------------------------

def tree(n, fanout=1, seeds=("h00",)):
    return filters.model_weights_fanout_tree([f"h{i:02d}" for i in range(n)], list(seeds), fanout)


def test_four_hosts_take_two_waves_and_the_second_copies_from_the_first_peer():
    assert tree(4) == {"h00": {"wave": 0, "source": ""}, "h01": {"wave": 1, "source": "h00"},
                       "h02": {"wave": 2, "source": "h00"}, "h03": {"wave": 2, "source": "h01"}}


def test_every_host_copies_once_from_a_copy_verified_in_an_earlier_wave():
    for n in range(1, 130):
        for fanout in (1, 2, 7):
            plan = tree(n, fanout)
            assert set(plan) == {f"h{i:02d}" for i in range(n)}
            for host, step in plan.items():
                if step["wave"] == 0:
                    assert step["source"] == ""
                else:
                    assert plan[step["source"]]["wave"] < step["wave"], (host, step)
        # ceil(log2 n) waves with fanout 1.
        assert max(step["wave"] for step in tree(n).values()) == (n - 1).bit_length()


@pytest.mark.parametrize("n,waves", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (16, 4),
                                     (17, 5), (128, 7), (129, 8), (1024, 10)])
def test_fanout_1_doubles_the_copies_each_wave(n, waves):
    assert max(step["wave"] for step in tree(n).values()) == waves


@pytest.mark.parametrize("n", [2, 5, 16, 128])
def test_no_host_serves_more_than_fanout_copies_in_a_wave(n):
    for fanout in (1, 2, 3):
        served = {}
        for step in tree(n, fanout).values():
            if step["wave"]:
                served[(step["source"], step["wave"])] = served.get((step["source"], step["wave"]), 0) + 1
        assert max(served.values()) <= fanout


def test_a_fanout_of_the_tree_size_minus_one_is_one_wave_from_the_root():
    assert {step["source"] for h, step in tree(6, fanout=5).items() if h != "h00"} == {"h00"}
    assert max(step["wave"] for step in tree(6, fanout=5).values()) == 1


def test_verified_copies_are_seeds_and_the_plan_is_deterministic():
    plan = tree(6, seeds=("h00", "h03", "h04"))
    assert plan == tree(6, seeds=("h04", "h00", "h03"))
    assert {h: s["wave"] for h, s in plan.items()} == {"h00": 0, "h01": 1, "h02": 1, "h03": 0, "h04": 0, "h05": 1}
    assert [plan[h]["source"] for h in ("h01", "h02", "h05")] == ["h00", "h03", "h04"]


@pytest.mark.parametrize("args,message", [
    ((["a", "b"], ["a"], 0), "model_weights_peer_fanout must be a whole number >= 1"),
    ((["a", "b"], [], 1), "no host of a, b has or stages a copy to give"),
    ((["a", "a"], ["a"], 1), "a host appears twice"),
])
def test_a_tree_that_cannot_be_built_says_why(args, message):
    with pytest.raises(filters.AnsibleFilterError, match=message):
        filters.model_weights_fanout_tree(*args)


def test_the_play_plan_has_one_tree_per_root_and_counts_verified_copies():
    hostvars = {"a": settings(), "b": settings(source="peer", peer="a"), "c": settings(source="peer", peer="a"),
                "m": settings(source="path", path="/mnt/m", peer_fanout=3),
                "n": settings(source="peer", peer="m", peer_fanout=3),
                "o": settings(source="peer", peer="m", peer_fanout=3)}
    hostvars["c"]["__model_weights_state"] = {"verified": True}
    assert filters.model_weights_plan(hostvars, list(hostvars)) == {
        "a": {"wave": 0, "source": ""}, "c": {"wave": 0, "source": ""}, "b": {"wave": 1, "source": "a"},
        "m": {"wave": 0, "source": ""}, "n": {"wave": 1, "source": "m"}, "o": {"wave": 1, "source": "m"}}


def test_a_root_outside_the_batch_still_seeds_its_tree():
    hostvars = {"a": settings(), "b": settings(source="peer", peer="a"), "c": settings(source="peer", peer="a"),
                "d": settings(source="peer", peer="a")}
    assert filters.model_weights_plan(hostvars, ["b", "c", "d"]) == {
        "b": {"wave": 1, "source": "a"}, "c": {"wave": 2, "source": "a"}, "d": {"wave": 2, "source": "b"}}


def test_the_plan_reads_as_one_line_per_depth():
    assert filters.model_weights_plan_lines(tree(4)) == ["depth 1: h00 -> h01", "depth 2: h00 -> h02, h01 -> h03"]
    assert filters.model_weights_plan_lines(tree(1)) == ["no peer copies to make"]


# ---- The modules, run as Ansible runs them ----------------------------------------------

def test_repair_removes_wrong_files_stale_partials_and_the_marker(model, manifest, tmp_path):
    mw.write_marker(str(model), manifest, "hub", False)
    os.truncate(model / SHARD, 100)
    meta = model / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / (SHARD + ".metadata")).write_text("x")
    (meta / "abc.def.12345678.incomplete").write_bytes(b"partial")
    result = module("model_weights_check", dest=str(model), repo_id=REPO, revision=REV,
                    manifest=manifest, repair=True)
    assert result["changed"] and not result["verified"]
    assert set(result["removed"]) == {SHARD, mw.MARKER, ".cache/huggingface/download/abc.def.12345678.incomplete"}
    assert not (model / SHARD).exists() and not (meta / (SHARD + ".metadata")).exists()
    assert result["needed_bytes"] == next(f["size"] for f in manifest["files"] if f["path"] == SHARD)


def test_a_short_file_is_kept_for_a_resuming_copy(model, manifest):
    os.truncate(model / SHARD, 100)
    result = module("model_weights_check", dest=str(model), repo_id=REPO, revision=REV,
                    manifest=manifest, repair=True, keep_short=True)
    assert result["short"] == [SHARD] and result["removed"] == []
    assert (model / SHARD).stat().st_size == 100


def test_finalize_refuses_an_incomplete_copy(model, manifest):
    (model / SHARD).unlink()
    result = module("model_weights_check", dest=str(model), repo_id=REPO, revision=REV,
                    manifest=manifest, finalize=True)
    assert result["_failed"] and "not complete" in result["msg"]
    assert not (model / mw.MARKER).exists()


def test_a_copy_and_prewarm_write_progress_and_the_copy_verifies(model, manifest, tmp_path):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed here (the role installs it on hosts)")
    dest = tmp_path / "copy"
    work = tmp_path / "work"
    copy = module("model_weights_run", method="rsync", dest=str(dest), files=manifest["files"],
                  work_dir=str(work / "rsync"), source=str(model) + "/", streams=2)
    assert not copy["_failed"], copy
    assert json.loads((work / "rsync" / "progress.json").read_text())["state"] == "finished"
    assert copy["progress"]["done_bytes"] == manifest_bytes(manifest)
    done = module("model_weights_check", dest=str(dest), repo_id=REPO, revision=REV,
                  manifest=manifest, finalize=True, owner="root", group="root", source="peer",
                  origin="weights-2", wave=2)
    assert done["changed"] and done["verified"]
    assert mw.marker_is_valid(str(dest), REPO, REV)[0]
    marker = mw.read_marker(str(dest))
    assert (marker["source"], marker["origin"], marker["wave"]) == ("peer", "weights-2", 2)
    warm = module("model_weights_run", method="prewarm", dest=str(dest), files=manifest["files"],
                  work_dir=str(work / "prewarm"))
    assert warm["progress"]["done_bytes"] == manifest_bytes(manifest)


def test_a_job_past_its_timeout_is_killed_and_fails(tmp_path, model, manifest):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed here (the role installs it on hosts)")
    # A daemon on loopback that accepts and never answers: rsync waits until killed.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        result = module("model_weights_run", method="rsync", dest=str(tmp_path / "copy"),
                        files=manifest["files"], work_dir=str(tmp_path / "work"),
                        source=f"rsync://127.0.0.1:{port}/models/", streams=1, timeout=2)
    assert result["_failed"]
    assert result["msg"].startswith("rsync timed out after 2 s")
    assert json.loads((tmp_path / "work" / "progress.json").read_text())["state"] == "failed"


# ---- Following a copy that is still being staged ------------------------------------------

def test_a_copy_never_writes_in_place_and_keeps_partial_files_apart():
    argv = model_weights_run._rsync_argv("rsync://a/models/x/", "/d", "/l")
    assert "--partial-dir=.rsync-partial" in argv
    assert not {"--inplace", "--append", "--append-verify"} & set(argv)


def follow(model, manifest, tmp_path, **over):
    args = dict(method="follow", dest=str(tmp_path / "copy"), files=manifest["files"],
                work_dir=str(tmp_path / "work"), source=str(model) + "/", upstream="weights-1",
                streams=2, stall_timeout=3, poll=0.5)
    return module("model_weights_run", **dict(args, **over))


def test_a_follower_copies_a_complete_upstream_and_says_when_its_first_file_landed(model, manifest, tmp_path):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed here (the role installs it on hosts)")
    result = follow(model, manifest, tmp_path)
    assert not result["_failed"], result
    assert mw.check(str(tmp_path / "copy"), manifest)["present_bytes"] == manifest_bytes(manifest)
    written = json.loads((tmp_path / "work" / "progress.json").read_text())
    assert (written["state"], written["upstream"], written["files_done"]) == ("finished", "weights-1", len(manifest["files"]))
    assert written["first_file_at"] is not None
    assert filters.model_weights_progress_line(written).startswith(
        f"follow weights-1 ({len(manifest['files'])} of {len(manifest['files'])} files) finished")


def test_a_follower_never_copies_a_file_short_upstream_and_names_a_stalled_upstream(model, manifest, tmp_path):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed here (the role installs it on hosts)")
    os.truncate(model / SHARD, 1000)  # still being written upstream, at the final name
    result = follow(model, manifest, tmp_path)
    assert result["_failed"]
    assert "following weights-1: weights-1 completed no further file in 3 s" in result["msg"]
    assert f"first {SHARD}" in result["msg"]
    copy = tmp_path / "copy"
    assert not (copy / SHARD).exists()
    assert {f["path"] for f in manifest["files"]} - {SHARD} <= {p.name for p in copy.iterdir()}


def test_a_follower_copies_each_file_as_soon_as_it_is_complete_upstream(model, manifest, tmp_path):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed here (the role installs it on hosts)")
    whole = (model / SHARD).read_bytes()
    (model / SHARD).unlink()  # not there yet upstream; it lands 2 s after the follower starts
    upstream = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time; time.sleep(2); "
        "open(sys.argv[1] + '.part', 'wb').write(open(sys.argv[2], 'rb').read()); "
        "os.replace(sys.argv[1] + '.part', sys.argv[1])"), str(model / SHARD), str(tmp_path / "whole")])
    (tmp_path / "whole").write_bytes(whole)
    result = follow(model, manifest, tmp_path, stall_timeout=20)
    upstream.wait()
    assert not result["_failed"], result
    assert (tmp_path / "copy" / SHARD).read_bytes() == whole


def test_a_follower_names_an_upstream_it_cannot_reach(manifest, tmp_path):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed here (the role installs it on hosts)")
    result = module("model_weights_run", method="follow", dest=str(tmp_path / "copy"),
                    files=manifest["files"], work_dir=str(tmp_path / "work"),
                    source=str(tmp_path / "nowhere") + "/", upstream="weights-2", stall_timeout=1,
                    poll=0.3)
    assert result["_failed"]
    assert "weights-2 completed no further file in 1 s" in result["msg"]
    assert "listing it: rsync: [sender] change_dir" in result["msg"]
