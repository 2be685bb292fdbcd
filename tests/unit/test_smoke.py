"""Smoke checks: SSE parsing, tool-call accumulation, and each check against the simulator."""
import json

import pytest

from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_smoke
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_client import parse_sse
from sim_process import Sim, free_port

THINKING = ["--model-path", "moonshotai/Kimi-K2-Thinking", "--reasoning-parser", "kimi_k2",
            "--tool-call-parser", "kimi_k2", "--enable-metrics"]
INSTRUCT = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tool-call-parser", "kimi_k2"]


def test_parse_sse_handles_crlf_multiline_and_done():
    text = 'data: {"a": 1}\r\n\r\n: keep-alive\n\ndata: {"b":\ndata: 2}\n\ndata: [DONE]\n\n'
    assert parse_sse(text) == (['{"a": 1}', '{"b":\n2}'], True)
    assert parse_sse('data: {"a": 1}\n\n') == (['{"a": 1}'], False)


def test_tool_call_deltas_accumulate():
    chunks = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "functions.get_weather:0",
                                                "function": {"name": "get_weather",
                                                             "arguments": ""}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0,
                                                "function": {"arguments": '{"loc'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0,
                                                "function": {"arguments": 'ation": "B"}'}}]},
                      "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"completion_tokens": 3}},
    ]
    folded = sglang_smoke.accumulate_chat_stream([json.dumps(c) for c in chunks])
    assert folded["tool_calls"] == [{"id": "functions.get_weather:0", "name": "get_weather",
                                     "arguments": '{"location": "B"}'}]
    assert folded["finish_reason"] == "tool_calls"


def expect(model, reasoning, tools=True, metrics=False, rank=0, api_key=True):
    return {"served_model_name": model, "model_path": model, "rank": rank,
            "reasoning": reasoning, "tool_calls": tools, "metrics": metrics,
            "api_key": api_key}


def run(argv, exp, key="k", served=None):
    sim = Sim(argv + (["--api-key", key] if key else []), api_key=key)
    try:
        sim.wait_ready()
        return {c["name"]: c for c in sglang_smoke.run_smoke(
            f"http://127.0.0.1:{sim.port}", key, exp, 30)}
    finally:
        sim.stop()


def test_a_healthy_thinking_endpoint_passes_every_check():
    checks = run(THINKING, expect("moonshotai/Kimi-K2-Thinking", True, metrics=True))
    assert list(checks) == ["health", "models", "model_info", "auth", "chat", "chat_stream",
                            "tool_call", "tool_call_stream", "tool_round_trip", "metrics"]
    assert all(c["passed"] for c in checks.values()), checks


def test_reasoning_parser_on_instruct_is_caught():
    checks = run([*INSTRUCT, "--reasoning-parser", "kimi_k2"],
                 expect("moonshotai/Kimi-K2-Instruct", False))
    assert not checks["chat"]["passed"] and not checks["chat_stream"]["passed"]
    assert "a reasoning parser on a non-thinking model" in checks["chat"]["expected"]


def test_thinking_without_reasoning_parser_is_caught():
    checks = run(["--model-path", "moonshotai/Kimi-K2-Thinking", "--tool-call-parser",
                  "kimi_k2"], expect("moonshotai/Kimi-K2-Thinking", True))
    assert not checks["chat"]["passed"]
    assert "separate" in checks["chat"]["expected"]


def test_missing_tool_parser_fails_the_tool_checks():
    checks = run(["--model-path", "moonshotai/Kimi-K2-Instruct"],
                 expect("moonshotai/Kimi-K2-Instruct", False))
    assert checks["chat"]["passed"]
    for name in ("tool_call", "tool_call_stream", "tool_round_trip"):
        assert not checks[name]["passed"], name


def test_wrong_served_name_and_open_endpoint_are_caught():
    checks = run(INSTRUCT, expect("kimi-k2", False, api_key=False), key="")
    assert not checks["models"]["passed"] and "kimi-k2" in checks["models"]["expected"]
    assert "auth" not in checks  # no key configured: nothing to enforce
    checks = run(INSTRUCT, expect("moonshotai/Kimi-K2-Instruct", False, api_key=True), key="")
    assert not checks["auth"]["passed"]


def test_rank_one_gets_the_health_check_only():
    argv = ["--model-path", "m", "--tp-size", "16", "--nnodes", "2", "--node-rank", "1",
            "--dist-init-addr", "h:1"]
    checks = run(argv, expect("m", False, rank=1))
    assert list(checks) == ["health"] and checks["health"]["passed"]


def test_failures_are_truncated_and_redacted():
    smoke = sglang_smoke.Smoke(sglang_smoke.Endpoint("http://x", "s3cret-key"), {})
    assert smoke.redact("key s3cret-key " + "x" * 400).startswith("key <redacted> ")
    assert smoke.redact("y" * 400).endswith("...(truncated)")


def test_a_dead_endpoint_fails_with_the_transport_error():
    checks = sglang_smoke.run_smoke("http://127.0.0.1:9", "", expect("m", False), 2)
    assert not checks[0]["passed"] and "TransportError" in checks[0]["got"]


@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_a_pd_half_gets_the_checks_it_can_answer_without_its_router(mode):
    """A prefill or decode half generates only when the router pairs it (a chat sent to
    the decode half alone fails its handshake): health, the in-server generation probe,
    the model list and info, the key and metrics; its answers are checked through the
    router (verify.yml)."""
    argv = [*INSTRUCT, "--enable-metrics", "--disaggregation-mode", mode]
    if mode == "prefill":
        argv += ["--disaggregation-bootstrap-port", str(free_port())]
    exp = {**expect("moonshotai/Kimi-K2-Instruct", False, metrics=True),
           "disaggregation_mode": mode}
    checks = run(argv, exp)
    assert list(checks) == ["health", "health_generate", "models", "model_info", "auth",
                            "metrics"]
    assert all(c["passed"] for c in checks.values()), checks


def test_a_decode_node_reaches_each_bootstrap_server_it_is_given():
    """Every rank of a decode server asks the prefills' bootstrap servers before each KV
    transfer: one it cannot reach is named, with what that does to requests."""
    bootstrap_port = free_port()
    prefill = Sim([*INSTRUCT, "--disaggregation-mode", "prefill",
                   "--disaggregation-bootstrap-port", str(bootstrap_port)])
    try:
        prefill.wait_ready()
        reachable = f"127.0.0.1:{bootstrap_port}"
        closed = f"127.0.0.1:{free_port()}"
        for rank in (0, 1):
            argv = [*INSTRUCT, "--disaggregation-mode", "decode"]
            if rank:
                argv += ["--tp-size", "16", "--nnodes", "2", "--node-rank", "1",
                         "--dist-init-addr", "h:1"]
            exp = {**expect("moonshotai/Kimi-K2-Instruct", False, rank=rank),
                   "disaggregation_mode": "decode", "bootstrap": [reachable, closed]}
            checks = run(argv, exp)
            assert list(checks)[:3] == ["health", f"bootstrap {reachable}", f"bootstrap {closed}"]
            assert checks[f"bootstrap {reachable}"]["passed"], checks
            failed = checks[f"bootstrap {closed}"]
            assert not failed["passed"] and "refused" in failed["got"], failed
            assert f"bootstrap server {closed}" in failed["expected"]
            assert "each request through the router waits" in failed["expected"]
    finally:
        prefill.stop()


def test_behind_an_unreachable_bootstrap_server_nothing_that_generates_is_run():
    """The rollout gates a decode server through its router: a chat there would wait out
    SGLang's 300 s bootstrap timeout (sglang_verify's GSM8K is skipped too, gsm8k.yml)."""
    closed = f"127.0.0.1:{free_port()}"
    checks = run(THINKING, {**expect("moonshotai/Kimi-K2-Thinking", True, metrics=True),
                            "bootstrap": [closed]})
    generating = ["chat", "chat_stream", "tool_call", "tool_call_stream", "tool_round_trip"]
    for name in generating:
        assert checks[name]["got"] == f"not run: this node cannot reach {closed}", checks[name]
    assert all(checks[name]["passed"] for name in ("health", "models", "auth", "metrics"))
