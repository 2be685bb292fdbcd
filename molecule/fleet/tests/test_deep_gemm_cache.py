"""The DeepGEMM compile cache (issue 16 item 4) on the fleet: two groups of one layout
(kimi_demo_pair1: fleet-1, fleet-2; pair2: fleet-3, fleet-4), the inventory's
sglang_service_deep_gemm_cache_enabled on, the precompile the simulator's stand-in
(sglang_sim.compile_deep_gemm, a test double that writes a small layout-derived cache).

Runs before tests/test_fleet.py (file order) and leaves the fleet as the converge did:
the last test brings pair2 back to the fleet's layout, healthy and in the router.
"""
from __future__ import annotations

import json
import subprocess
import time

from test_fleet import DEMO_ENV, OLD, PAIRS, healthy, ok, playbook, router, sh, started

ROOT = "/var/lib/sglang/deep_gemm"
MARKER = ".model-weights-verified.json"
SERVERS = [host for pair in PAIRS.values() for host in pair]
RANK_PEER = {"fleet-3": "fleet-1", "fleet-4": "fleet-2"}  # pair2's rank r copies pair1's rank r
# A layout of pair2's own (--chunked-prefill-size is one of the flags that shape the kernels).
OTHER_LAYOUT = {"sglang_service_chunked_prefill_size": 4096}


def unit_cache_dir(host: str) -> str:
    for line in sh(host, "cat /etc/systemd/system/sglang.service").splitlines():
        if line.startswith("Environment=SGLANG_DG_CACHE_DIR="):
            return line.split("=", 2)[2]
    raise AssertionError(f"{host}: the unit sets no SGLANG_DG_CACHE_DIR")


def server_cache_dir(host: str) -> str:
    """SGLANG_DG_CACHE_DIR in the running server's own environment."""
    pid = sh(host, "systemctl show sglang.service -p MainPID --value").strip()
    assert pid != "0", f"{host}: sglang.service does not run"
    # As the service account: root in a container without CAP_SYS_PTRACE may not read it.
    env = subprocess.run(["podman", "exec", "-u", "sglang", host, "sh", "-c",
                          f"tr '\\0' '\\n' < /proc/{pid}/environ"],
                         check=True, capture_output=True, text=True).stdout
    return next(line.split("=", 1)[1] for line in env.splitlines()
                if line.startswith("SGLANG_DG_CACHE_DIR="))


def marker(host: str, directory: str) -> dict | None:
    text = sh(host, f"cat {directory}/{MARKER} 2>/dev/null || true")
    return json.loads(text) if text.strip() else None


def files(host: str, directory: str) -> dict[str, int]:
    out = sh(host, f"cd {directory} && find . -type f ! -name '{MARKER}' -printf '%P %s\\n'")
    return dict((p, int(s)) for p, s in (line.rsplit(" ", 1) for line in out.splitlines()))


def compiles(host: str) -> int:
    """How many times the precompile's transient unit started on host."""
    out = sh(host, "journalctl -u sglang-deep-gemm-compile.service -o cat --no-pager || true")
    return out.count("Started sglang-deep-gemm-compile.service")


def active(host: str) -> str:
    return sh(host, "systemctl is-active sglang.service || true").strip()


def test_the_converge_built_one_cache_for_the_layout_and_copied_it_rank_for_rank():
    dirs = {h: unit_cache_dir(h) for h in SERVERS}
    key_dir = dirs["fleet-1"]
    assert key_dir.startswith(ROOT + "/sglang-0.5.6.post1_h200_tp") and "-n2_" in key_dir
    assert set(dirs.values()) == {key_dir}, dirs          # one layout, one key, every rank
    key = key_dir.rsplit("/", 1)[1]
    for host in SERVERS:
        found = marker(host, key_dir)
        assert found and found["repo_id"] == "deepgemm-jit-cache" and found["revision"] == key, host
        assert server_cache_dir(host) == key_dir, host    # the server runs on it
    # pair1 compiled (one precompile per rank, together); pair2 never did: it copied.
    for host in PAIRS["kimi_demo_pair1"]:
        assert marker(host, key_dir)["source"] == "compile" and compiles(host) == 1, host
    for host, peer in RANK_PEER.items():
        found = marker(host, key_dir)
        assert (found["source"], found["origin"]) == ("copy", peer), found
        assert compiles(host) == 0, host
        assert files(host, key_dir) == files(peer, key_dir) != {}, host
    assert "not a kernel" in sh("fleet-3", f"cat {key_dir}/cache/*/kernel.cubin | head -1")  # the stand-in's
    # Nothing left staged: no archive, no .partial.
    for host in SERVERS:
        assert sh(host, f"ls {ROOT}").split() == [key], host


def test_a_cache_that_could_not_be_built_is_never_used():
    """A new layout for pair2 alone (no other group has its cache: pair2 builds it), and
    the precompile's server dies: the run fails naming it, nothing is marked, and SGLang
    is not started on the half-built cache."""
    began = time.monotonic()
    run = playbook("serve.yml", options=("--limit", "kimi_demo_pair2"), extra={
        **OTHER_LAYOUT, "sglang_service_extra_env": dict(
            DEMO_ENV, SGLANG_SIM_VERSION=OLD, SGLANG_SIM_DG_COMPILE_CRASH="1")})
    text = " ".join(run.stdout.split())
    assert run.returncode != 0, text[-4000:]
    assert "The DeepGEMM precompile of kimi_demo_pair2" in text, text[-4000:]
    assert "failed on fleet-3, fleet-4" in text and "SGLang was not started" in text, text[-4000:]
    assert "compilation timeout" in text, text[-4000:]
    assert time.monotonic() - began < 300
    for host in PAIRS["kimi_demo_pair2"]:
        new_dir = unit_cache_dir(host)
        assert new_dir != unit_cache_dir("fleet-1")
        assert active(host) != "active", host
        assert sh(host, f"test -e {new_dir} && echo there || echo absent").strip() == "absent"
        assert marker(host, new_dir + ".partial") is None


def test_a_changed_layout_gets_a_cache_of_its_own():
    before = {h: marker(h, unit_cache_dir("fleet-1")) for h in PAIRS["kimi_demo_pair2"]}
    ok(playbook("serve.yml", options=("--limit", "kimi_demo_pair2"), extra=OTHER_LAYOUT))
    fleet_dir = unit_cache_dir("fleet-1")
    for host in PAIRS["kimi_demo_pair2"]:
        new_dir = unit_cache_dir(host)
        assert new_dir != fleet_dir and "-n2_" in new_dir
        found = marker(host, new_dir)
        assert found and found["source"] == "compile" and found["revision"] == new_dir.rsplit("/", 1)[1]
        assert server_cache_dir(host) == new_dir and healthy(host), host
        assert marker(host, fleet_dir) == before[host]     # the fleet layout's cache is kept
        assert compiles(host) == 2, host                    # the crashed try, then this one


def test_back_on_the_fleet_s_layout_a_damaged_cache_is_copied_again_before_the_start():
    fleet_dir = unit_cache_dir("fleet-1")
    kept = marker("fleet-4", fleet_dir)
    kernel = sorted(files("fleet-3", fleet_dir))[0]
    sh("fleet-3", f"truncate -s 1 {fleet_dir}/{kernel}")  # fleet-3's copy is incomplete now
    pair1_started = {h: started(h) for h in PAIRS["kimi_demo_pair1"]}
    ok(playbook("serve.yml"))
    for host in PAIRS["kimi_demo_pair2"]:
        assert unit_cache_dir(host) == fleet_dir and server_cache_dir(host) == fleet_dir
        assert compiles(host) == 2, host                    # copied, not compiled
    repaired = marker("fleet-3", fleet_dir)
    assert (repaired["source"], repaired["origin"]) == ("copy", "fleet-1")
    assert files("fleet-3", fleet_dir) == files("fleet-1", fleet_dir)
    assert marker("fleet-4", fleet_dir) == kept             # complete: left alone
    assert {h: started(h) for h in PAIRS["kimi_demo_pair1"]} == pair1_started
    assert compiles("fleet-1") == 1
    # As the converge left it, for tests/test_fleet.py: pair2 healthy and in the router.
    deadline = time.monotonic() + 90
    while True:
        status, listing = router("/workers")
        workers = {w["url"]: w["is_healthy"] for w in listing.get("workers", [])}
        if status == 200 and workers.get("http://fleet-3:30000") and healthy("fleet-3"):
            break
        assert time.monotonic() < deadline, workers
        time.sleep(2)
