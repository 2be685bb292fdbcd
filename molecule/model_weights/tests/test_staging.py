"""Staging model weights on the converged test hosts: what converge left, then damage,
interruption, a mirror, and refusals, each through playbooks/stage_weights.yml.

Runs from the scenario's verify.yml, after converge and idempotence. weights-1 stages
from the Hub stand-in; the others copy in its copy tree (peer), two hops deep, every copy
at once, each following its source file by file; weights-2 also stages from its mounted
mirror (path).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from scenario import ok, sh  # tests/lib, on the path: pytest.ini

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
MODEL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "test-model"
INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
REPO = "kimi-test/Kimi-K2-Tiny"
REVISION = "4b1d2c3e5f60718293a4b5c6d7e8f90112233445"
COPY = f"/srv/models/{REPO}/{REVISION}"
SHARDS = sorted(p.name for p in MODEL.glob("*.safetensors"))
HOSTS = ("weights-1", "weights-2", "weights-3", "weights-4")


def stage_argv(*extra_vars: str, limit: str | None = None) -> list[str]:
    # Converge and idempotence ran the install steps; each case here is about staging.
    argv = ["ansible-playbook", "-i", INVENTORY, str(PROJECT / "playbooks/stage_weights.yml"),
            "--skip-tags", "model_weights_install"]
    argv += ["--limit", limit] if limit else []
    for item in extra_vars:
        argv += ["-e", item]
    return argv


def stage(*extra_vars: str, limit: str | None = None) -> subprocess.CompletedProcess:
    # ansible-core 2.19 writes task failures to stderr: keep both in one stream.
    return subprocess.run(stage_argv(*extra_vars, limit=limit), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)


def source_digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(MODEL.iterdir()) if p.is_file()}


def copy_digests(host: str, directory: str) -> dict[str, str]:
    out = sh(host, f"cd {directory} && sha256sum $(find . -maxdepth 1 -type f ! -name '.*')")
    return {line.split()[1][2:]: line.split()[0] for line in out.splitlines()}


def hub_requests(port: int = 8080) -> list[dict]:
    log = sh("weights-hub", f"cat /var/log/hub-standin-{port}.jsonl 2>/dev/null || true")
    return [r for r in map(json.loads, log.splitlines()) if "/resolve/" in r["path"]]


def body_bytes(requests: list[dict]) -> int:
    return sum(r["bytes_sent"] for r in requests if r["method"] == "GET")


def marker(host: str, copy: str = COPY) -> dict:
    return json.loads(sh(host, f"cat {copy}/.model-weights-verified.json"))


def address(host: str) -> str:
    return sh("weights-1", f"getent hosts {host}").split()[0]


def test_every_copy_is_the_source_byte_for_byte():
    for host in HOSTS:
        assert copy_digests(host, COPY) == source_digests(), host


# The copy tree with fan-out 1: weights-1 -> weights-2 (depth 1); weights-1 -> weights-3
# and weights-2 -> weights-4 (depth 2). The marker's "wave" is the depth.
@pytest.mark.parametrize("host,source,origin,wave", [
    ("weights-1", "hub", "http://weights-hub:8080", 0), ("weights-2", "peer", "weights-1", 1),
    ("weights-3", "peer", "weights-1", 2), ("weights-4", "peer", "weights-2", 2)])
def test_the_marker_records_the_verified_revision_and_where_it_came_from(host, source, origin, wave):
    found = marker(host)
    assert (found["repo_id"], found["revision"]) == (REPO, REVISION)
    assert (found["source"], found["origin"], found["wave"]) == (source, origin, wave)
    assert {f["path"] for f in found["files"]} == set(source_digests())


# Each peer followed the host the plan gave it, to the last file. That a follower copies
# a file as soon as it is complete upstream (and never a short one) is shown by the unit
# tests of model_weights_run and measured by bench/weights_staging: this test model's four
# small shards all complete at once, so here the copies cannot overlap the download.
@pytest.mark.parametrize("host,source", [("weights-2", "weights-1"), ("weights-3", "weights-1"),
                                         ("weights-4", "weights-2")])
def test_each_peer_followed_the_source_the_plan_gave_it(host, source):
    follow = json.loads(sh(host, "cat /var/tmp/model-weights/follow/progress.json"))
    assert (follow["state"], follow["upstream"]) == ("finished", source)
    assert follow["files_done"] == follow["files_total"] and follow["first_file_at"], follow


# The daemons' own logs, not the markers: who really read from whom.
@pytest.mark.parametrize("server,readers", [("weights-1", ["weights-2", "weights-3"]),
                                            ("weights-2", ["weights-4"]), ("weights-3", []),
                                            ("weights-4", [])])
def test_each_copy_was_read_from_the_source_the_plan_gave_it(server, readers):
    log = sh(server, "journalctl -q -u model-weights-rsyncd.service --no-pager -o cat")
    connected = {h for h in HOSTS if f"({address(h)})" in log}
    assert connected == set(readers), log[-3000:]


@pytest.mark.parametrize("host", HOSTS)
def test_the_copy_is_read_only_to_the_service_user(host):
    modes = sh(host, f"stat -c '%U:%G %a %n' {COPY} {COPY}/{SHARDS[0]}").splitlines()
    assert modes == [f"sglang:sglang 550 {COPY}", f"sglang:sglang 440 {COPY}/{SHARDS[0]}"]


def test_only_the_hub_host_downloaded_and_each_file_once():
    gets = [r["path"].rsplit("/", 1)[1] for r in hub_requests() if r["method"] == "GET"]
    assert sorted(gets) == sorted(source_digests())


@pytest.mark.parametrize("host", HOSTS)
def test_every_host_of_the_tree_serves_the_others_and_no_one_else(host):
    assert sh(host, "systemctl is-active model-weights-rsyncd.service").strip() == "active"
    allow = [line.split("=", 1)[1].split() for line in sh(host, "cat /etc/model-weights/rsyncd.conf").splitlines()
             if line.strip().startswith("hosts allow")]
    assert allow == [[h for h in HOSTS if h != host]]


def test_the_token_is_a_root_only_file_and_in_no_unit_or_log():
    assert sh("weights-1", "stat -c '%U %a' /etc/model-weights/hf-token").strip() == "root 600"
    leaks = sh("weights-1", "grep -rl hf_standin_token /etc/systemd /var/tmp/model-weights "
                            "/srv/models || true")
    assert leaks.strip() == ""


def test_truncated_and_missing_shards_are_detected_and_repaired():
    before = len(hub_requests())
    sh("weights-1", f"truncate -s 1000 {COPY}/{SHARDS[0]}")
    sh("weights-2", f"truncate -s 5000000 {COPY}/{SHARDS[1]} && rm {COPY}/{SHARDS[2]}")
    sh("weights-3", f"rm {COPY}/{SHARDS[3]}")
    run = stage()
    ok(run)
    assert "is missing or has the wrong size" in run.stdout
    # weights-4's copy is still verified: it serves one hop below the root, beside it.
    assert "depth 1: weights-1 -> weights-2, weights-4 -> weights-3" in run.stdout
    for host in HOSTS:
        assert copy_digests(host, COPY) == source_digests(), host
    assert (marker("weights-3")["origin"], marker("weights-3")["wave"]) == ("weights-4", 1)
    # weights-1 fetched the damaged shard again, nothing else; the peers used peers.
    again = [r for r in hub_requests()[before:] if r["method"] == "GET"]
    assert [r["path"].rsplit("/", 1)[1] for r in again] == [SHARDS[0]]


def shard_sizes(host: str, directory: str) -> dict[str, int]:
    out = sh(host, f"cd {directory} 2>/dev/null && stat -c '%n %s' *.safetensors 2>/dev/null || true")
    return {name: int(size) for name, size in (line.split() for line in out.splitlines())}


def test_a_failed_download_fails_its_followers_by_name_and_a_rerun_resumes():
    # The stand-in on 8081 sends 4 MiB/s, one file at a time: ~8 s for the 32 MiB. The
    # peers follow weights-1 file by file; once weights-2 holds a whole shard, weights-1's
    # download is killed. The hf client keeps finished files, not partial ones. The
    # follow timeout leaves room for the hf client's start on a loaded machine.
    target = "/srv/models-resume"
    copy = f"{target}/{REPO}/{REVISION}"
    common = [f"model_weights_models_dir={target}", "model_weights_hf_endpoint=http://weights-hub:8081",
              "model_weights_hub_max_workers=1"]
    whole = {name: (MODEL / name).stat().st_size for name in SHARDS}
    with subprocess.Popen(stage_argv(*common, "model_weights_follow_timeout=20"), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as first:
        deadline = time.monotonic() + 300
        while not any(whole[n] == size for n, size in shard_sizes("weights-2", copy).items()):
            if first.poll() is not None or time.monotonic() > deadline:
                pytest.fail("weights-2 copied no shard:\n" + first.communicate()[0][-6000:])
            time.sleep(0.5)
        # Pipelined: weights-2 has a whole shard while weights-1 is still downloading.
        hub = json.loads(sh("weights-1", "cat /var/tmp/model-weights/hub/progress.json"))
        assert hub["state"] == "running"
        sh("weights-1", "for pid in $(pgrep -f 'model-weights/venv/bin/h[f] download'); do kill $pid; done")
        out, _ = first.communicate(timeout=600)
    assert first.returncode != 0
    # The callback prints a failure over several lines: "fatal: [host]: FAILED! =>", then
    # its fields, up to the next blank line; the message may be folded across lines.
    failed: dict[str, str] = {}
    for chunk in out.split("\n\n"):
        for host in HOSTS:
            if f"fatal: [{host}]" in chunk:
                failed[host] = failed.get(host, "") + " ".join(chunk.split())
    assert "hub failed" in " ".join(out.split()), out[-6000:]
    # weights-2 and weights-3 follow weights-1; weights-4 follows weights-2.
    for host, upstream in (("weights-2", "weights-1"), ("weights-3", "weights-1"), ("weights-4", "weights-2")):
        assert f"following {upstream}: {upstream} completed no further file in 20 s" in failed.get(host, ""), out[-6000:]
    done_first = body_bytes(hub_requests(8081))
    # The re-run resumes; every copy is also checked against the Hub's LFS sha256.
    second = stage(*common, "model_weights_verify_sha256=true")
    ok(second)
    total = sum((MODEL / name).stat().st_size for name in source_digests())
    resumed = body_bytes(hub_requests(8081)) - done_first
    assert 0 < resumed < total, (resumed, total)
    for host in HOSTS:
        assert copy_digests(host, copy) == source_digests(), host
        found = marker(host, copy)
        assert found["sha256_checked"] is True
        assert {f["path"]: f["sha256"] for f in found["files"] if f["sha256"]} == {
            name: digest for name, digest in source_digests().items() if name.endswith(".safetensors")}


# Four independent one-run cases, run side by side (each stages into its own directory,
# none of them asks the Hub on 8080 for a file): the scenario's time is mostly Ansible's
# round trips, which overlap.
SIDE_BY_SIDE = {
    "no space": (["model_weights_models_dir=/srv/models-nospace",
                  "model_weights_free_space_margin_gib=100000000"], "weights-1"),
    "mirror": (["model_weights_source=path", "model_weights_path=/mnt/mirror",
                "model_weights_models_dir=/srv/models-from-mirror"], "weights-2"),
    "broken mirror": (["model_weights_source=path", "model_weights_path=/tmp/mirror-broken",
                       "model_weights_models_dir=/srv/models-broken"], "weights-3"),
    "moving revision": (["model_weights_revision=main", "model_weights_models_dir=/srv/models-main"], None),
}


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory) -> dict[str, tuple[int, str]]:
    sh("weights-3", "rm -rf /tmp/mirror-broken && mkdir /tmp/mirror-broken")
    run_(["podman", "cp", f"{MODEL}/.", "weights-3:/tmp/mirror-broken/"])
    sh("weights-3", f"truncate -s 4096 /tmp/mirror-broken/{SHARDS[3]}")
    before = len(hub_requests())
    # The toolkit's locks refuse a second run on one inventory or one host: the cases
    # limited to one host each (disjoint) take their own controller lock directory, and
    # the one that names every host runs first, alone.
    found = {}
    for name, (extra, limit) in SIDE_BY_SIDE.items():
        if limit is None:
            run = stage(*extra)
            found[name] = (run.stdout, run.returncode)
    procs = {name: subprocess.Popen(stage_argv(*extra, limit=limit), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env={**os.environ, "KIMI_K2_LOCK_DIR":
                                         str(tmp_path_factory.mktemp("locks"))})
             for name, (extra, limit) in SIDE_BY_SIDE.items() if limit is not None}
    found |= {name: (proc.communicate(timeout=900)[0], proc.returncode)
              for name, proc in procs.items()}
    found["hub requests before"] = before
    return found


def run_(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def test_too_little_disk_fails_before_downloading_anything(side_by_side):
    out, code = side_by_side["no space"]
    assert code != 0
    assert "Not enough free space" in out
    assert "model_weights_free_space_margin_gib" in out
    assert [r for r in hub_requests()[side_by_side["hub requests before"]:] if r["method"] == "GET"] == []
    assert sh("weights-1", "find /srv/models-nospace -type f | grep -v '/.cache/' || true").strip() == ""


def test_a_mounted_mirror_is_copied_and_verified(side_by_side):
    out, code = side_by_side["mirror"]
    assert code == 0, out[-6000:]
    copy = f"/srv/models-from-mirror/{REPO}/{REVISION}"
    assert copy_digests("weights-2", copy) == source_digests()
    assert (marker("weights-2", copy)["source"], marker("weights-2", copy)["origin"]) == ("path", "/mnt/mirror")


def test_an_incomplete_mirror_is_refused(side_by_side):
    out, code = side_by_side["broken mirror"]
    assert code != 0
    assert f"is incomplete: {SHARDS[3]} is 4096 bytes, its header says" in out


def test_a_moving_revision_is_refused_before_any_host_is_touched(side_by_side):
    out, code = side_by_side["moving revision"]
    assert code != 0
    assert "model_weights_revision must be the full 40-character commit sha" in out
    assert sh("weights-1", "test -e /srv/models-main && echo yes || echo no").strip() == "no"
