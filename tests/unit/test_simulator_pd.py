"""The simulator's prefill/decode halves speak SGLang's disaggregation protocol
(tools/sglang_sim/src/sglang_sim/disaggregation.py): a request sent to both halves with
the router's bootstrap fields is answered by the decode half once it took the prefill's
KV, and every broken transfer fails the request visibly instead of being papered over.

The last test puts each real gateway (sglang-router 0.3.2, smg 1.13.0) in PD mode in front
of the two halves; like tests/unit/test_sglang_router.py it needs SGLANG_ROUTER_PYTHON or
SMG_PYTHON (`make unit` sets both).
"""
from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from sim_process import Sim, free_port
from test_sglang_router import GATEWAY_PYTHONS, _installed
from test_simulator import INSTRUCT, run_sim

QUESTION = {"text": "Question: What is 15% of 240?\nAnswer:",
            "sampling_params": {"max_new_tokens": 64, "temperature": 0}}


@pytest.fixture
def halves():
    """A prefill (time to first token 300 ms) and a decode half, single node each."""
    bootstrap = free_port()
    prefill = Sim([*INSTRUCT, "--disaggregation-mode", "prefill",
                   "--disaggregation-bootstrap-port", str(bootstrap)],
                  env={"SGLANG_SIM_TTFT_MS": "300",
                       "SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT": "2"})
    decode = Sim([*INSTRUCT, "--disaggregation-mode", "decode"],
                 env={"SGLANG_DISAGGREGATION_WAITING_TIMEOUT": "2"})
    for sim in (prefill, decode):
        sim.wait_ready()
    yield prefill, decode, bootstrap
    for sim in (prefill, decode):
        sim.stop()


def routed(body, bootstrap, room=None):
    """The body as sglang-router's PD mode forwards it to both halves."""
    return {**body, "bootstrap_host": "127.0.0.1", "bootstrap_port": bootstrap,
            "bootstrap_room": random.getrandbits(63) if room is None else room}


def both(prefill, decode, prefill_body, decode_body):
    with ThreadPoolExecutor(2) as pool:
        p = pool.submit(prefill.request, "/generate", prefill_body)
        d = pool.submit(decode.request, "/generate", decode_body)
        return p.result(), d.result()


def test_the_decode_half_answers_after_taking_the_prefills_kv(halves):
    prefill, decode, bootstrap = halves
    plain = json.loads(run_sim_answer(INSTRUCT))
    body = routed(QUESTION, bootstrap)
    start = time.monotonic()
    (p_status, _), (d_status, d_raw) = both(prefill, decode, body, body)
    assert (p_status, d_status) == (200, 200)
    assert json.loads(d_raw)["text"] == plain["text"]  # same model, same answer
    assert time.monotonic() - start >= 0.3  # the prefill's time to first token


def run_sim_answer(argv):
    sim = Sim(argv)
    try:
        sim.wait_ready()
        return sim.request("/generate", QUESTION)[1]
    finally:
        sim.stop()


def test_a_decode_whose_prefill_does_not_answer_fails_the_request(halves):
    _, decode, _ = halves
    start = time.monotonic()
    status, raw = decode.request("/generate", routed(QUESTION, free_port(), room=7))
    assert status == 500
    assert "Decode handshake failed" in raw.decode() and "bootstrap_room=7" in raw.decode()
    assert time.monotonic() - start < 10


def test_a_prefill_whose_decode_never_comes_times_out(halves):
    prefill, _, bootstrap = halves
    status, raw = prefill.request("/generate", routed(QUESTION, bootstrap, room=11))
    assert status == 500
    assert "Request 11 timed out" in raw.decode()


def test_halves_holding_different_prompts_fail_the_request(halves):
    prefill, decode, bootstrap = halves
    body = routed(QUESTION, bootstrap)
    other = {**body, "text": "Question: What is 2 + 2?\nAnswer:"}
    _, (d_status, d_raw) = both(prefill, decode, body, other)
    assert d_status == 500 and "another prompt" in d_raw.decode()


def test_health_probes_need_no_transfer(halves):
    prefill, decode, _ = halves
    assert prefill.request("/health_generate")[0] == 200
    assert decode.request("/health_generate")[0] == 200
    probe = {**QUESTION, "bootstrap_host": "2.2.2.2", "bootstrap_room": 0}
    assert decode.request("/generate", probe)[0] == 200


def test_the_bootstrap_server_answers_like_sglangs(halves):
    _, _, bootstrap = halves
    base = f"http://127.0.0.1:{bootstrap}"
    with urllib.request.urlopen(f"{base}/route?engine_rank=-1&target_dp_group=-1"
                                "&target_pp_rank=-1") as response:
        assert json.loads(response.read()) == {
            "prefill_attn_tp_size": 8, "prefill_dp_size": 1, "prefill_pp_size": 1}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{base}/route?engine_rank=0")
    assert missing.value.code == 400


@pytest.mark.parametrize("argv, message", [
    (["--disaggregation-mode", "decode", "--dp-size", "2", "--enable-dp-attention"],
     "Prefill round robin balance is required"),
    (["--disaggregation-mode", "decode", "--disaggregation-decode-tp", "8"],
     "Cannot set --disaggregation-decode-tp for the decode engine."),
    (["--disaggregation-mode", "prefill", "--disaggregation-decode-tp", "3"],
     "one tp is multiple of the other. decode_tp=3, prefill_tp=8"),
])
def test_disaggregation_start_rules_fail_the_start_like_sglang(argv, message):
    result = run_sim([*INSTRUCT, "--port", str(free_port()), *argv])
    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.parametrize("package", [
    pytest.param(package, marks=pytest.mark.skipif(
        not _installed(package), reason=f"set {var} to a Python with the gateway installed"))
    for package, var in (("sglang_router", "SGLANG_ROUTER_PYTHON"), ("smg", "SMG_PYTHON"))])
def test_the_real_gateway_in_pd_mode_serves_through_both_halves(halves, package, tmp_path):
    prefill, decode, bootstrap = halves
    port = free_port()
    log = tmp_path / f"{package}.log"
    with log.open("wb") as sink:
        router = subprocess.Popen(
            [GATEWAY_PYTHONS[package], "-m", f"{package}.launch_router", "--pd-disaggregation",
             "--prefill", f"http://127.0.0.1:{prefill.port}", str(bootstrap),
             "--decode", f"http://127.0.0.1:{decode.port}",
             "--host", "127.0.0.1", "--port", str(port),
             "--prometheus-port", str(free_port())],
            stdout=sink, stderr=subprocess.STDOUT)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/generate", json.dumps(QUESTION).encode(),
            {"Content-Type": "application/json"})
        # Generous: the gateway registers both halves in the background, and a CI
        # machine running the container suites beside this one is slow to do it.
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.loads(response.read())
                break
            except OSError as error:
                tail = log.read_text(errors="replace")[-3000:]
                assert router.poll() is None, f"the gateway exited:\n{tail}"
                assert time.monotonic() < deadline, f"never served ({error}):\n{tail}"
                time.sleep(0.5)
        assert "36" in answer["text"]
        prefill.stop()  # the KV's source is gone: the request fails, visibly
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(request, timeout=20)
    finally:
        router.terminate()
        router.wait(10)
