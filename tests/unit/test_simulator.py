"""The SGLang simulator behaves like the real server from the outside."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import GSM8K_TEST, SHARED
from sim_process import SIM_SRC, Sim
from sglang_sim.server import _Pace

THINKING = ["--model-path", "moonshotai/Kimi-K2-Thinking", "--tp-size", "8",
            "--reasoning-parser", "kimi_k2", "--tool-call-parser", "kimi_k2"]
INSTRUCT = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp-size", "8",
            "--tool-call-parser", "kimi_k2"]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather of a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}
PERCENT = "Solve this problem step by step: What is 15% of 240?"


@pytest.fixture
def sim_factory():
    started = []

    def start(argv, **kwargs):
        sim = Sim(argv, **kwargs)
        started.append(sim)
        sim.wait_ready()
        return sim

    yield start
    for sim in started:
        if sim.proc.poll() is None:
            sim.stop()


def run_sim(argv):
    return subprocess.run([sys.executable, "-m", "sglang_sim.launch_server", *argv],
                          env={"PYTHONPATH": str(SIM_SRC)}, capture_output=True, text=True,
                          timeout=30)


def sse(raw: bytes) -> list:
    events = [line[len("data: "):] for line in raw.decode().split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_unknown_flag_exits_2_like_argparse():
    result = run_sim(["--model-path", "m", "--enable-ep-moe"])
    assert result.returncode == 2
    assert "unrecognized arguments: --enable-ep-moe" in result.stderr


def test_prefix_of_a_declared_flag_is_accepted_like_argparse():
    # --tp is only an argparse prefix of --tp-size in SGLang; it must parse the same here.
    from sglang_sim import cli  # tools/sglang_sim/src, on the path (pytest.ini)
    assert cli.parse(["--model-path", "m", "--tp", "8"]).tensor_parallel_size == 8


@pytest.mark.parametrize("argv,message", [
    (["--tp-size", "8", "--dp-size", "3", "--enable-dp-attention"], "divisible by dp_size"),
    (["--tp-size", "16", "--dp-size", "2", "--nnodes", "2", "--dist-init-addr", "a:1"],
     "unless dp attention"),
    (["--tp-size", "32", "--nnodes", "4", "--dist-init-addr", "a:1"], "block_n = 128"),
    (["--tp-size", "8", "--ep-size", "3"], "divisible by ep_size"),
    (["--served-model-name", "a:b"], "colon"),
])
def test_cross_flag_rules_fail_the_start(argv, message):
    result = run_sim(["--model-path", "m", *argv])
    assert result.returncode == 1
    assert message in result.stderr


def test_a_failure_after_load_ends_the_server_like_a_cuda_oom():
    result = subprocess.run([sys.executable, "-m", "sglang_sim.launch_server", *INSTRUCT],
                            env={"PYTHONPATH": str(SIM_SRC),
                                 "SGLANG_SIM_FAIL_AFTER_LOAD": "CUDA out of memory"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "Scheduler hit an exception: CUDA out of memory" in result.stderr


def test_load_then_warm_up_then_ready():
    sim = Sim(THINKING, env={"SGLANG_SIM_LOAD_SECONDS": "1", "SGLANG_SIM_WARMUP_SECONDS": "1"})
    try:
        seen = []
        deadline = time.monotonic() + 60  # a busy machine starts Python slowly
        while time.monotonic() < deadline and (not seen or seen[-1] != 200):
            code = sim.health()
            if not seen or seen[-1] != code:
                seen.append(code)
            time.sleep(0.05)
        assert seen == [None, 503, 200]
    finally:
        sim.stop()


def test_api_key_guards_everything_but_health_and_metrics(sim_factory, tmp_path):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text('# via --config, like SGLang\napi-key: "s3cret"\n')
    sim = sim_factory([*THINKING, "--enable-metrics", "--config", str(secrets)],
                      api_key="s3cret")
    assert sim.request("/v1/models", key="")[0] == 401
    assert sim.request("/v1/models", key="wrong")[0] == 401
    assert sim.request("/generate", {"text": "x"}, key="")[0] == 401
    assert sim.request("/health", key="")[0] == 200
    assert sim.request("/metrics", key="")[0] == 200
    assert sim.request("/v1/models")[0] == 200


def test_a_refused_post_leaves_a_kept_alive_connection_usable(sim_factory):
    # A router reuses connections: the body of a refused request must not be read as the
    # start of the next one.
    import http.client
    sim = sim_factory([*THINKING, "--api-key", "s3cret"], api_key="s3cret")
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
    body = json.dumps({"text": "x", "sampling_params": {"max_new_tokens": 2}})
    conn.request("POST", "/generate", body, {"Content-Type": "application/json"})
    refused = conn.getresponse()
    refused.read()
    assert refused.status == 401
    conn.request("POST", "/generate", body, {"Content-Type": "application/json",
                                             "Authorization": "Bearer s3cret"})
    assert conn.getresponse().status == 200
    conn.close()


def test_info_routes(sim_factory):
    sim = sim_factory([*THINKING, "--served-model-name", "kimi-thinking"])
    assert [m["id"] for m in sim.json("/v1/models")["data"]] == ["kimi-thinking"]
    assert sim.json("/get_model_info")["model_path"] == "moonshotai/Kimi-K2-Thinking"
    info = sim.json("/get_server_info")
    assert info["tensor_parallel_size"] == 8 and "not SGLang" in info["simulator"]
    assert sim.json("/server_info") == info
    assert sim.request("/metrics")[0] == 404  # only with --enable-metrics


def test_thinking_chat_separates_reasoning_and_answers_36(sim_factory):
    sim = sim_factory(THINKING)
    message = sim.json("/v1/chat/completions", {
        "messages": [{"role": "user", "content": PERCENT}]})["choices"][0]["message"]
    assert message["reasoning_content"] and "36" in message["content"]
    assert "<think>" not in message["content"]


def test_thinking_chat_streams_reasoning_then_content(sim_factory):
    sim = sim_factory(THINKING)
    status, raw = sim.request("/v1/chat/completions", {
        "stream": True, "messages": [{"role": "user", "content": PERCENT}]})
    deltas = [c["choices"][0]["delta"] for c in sse(raw) if c["choices"]]
    reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    assert status == 200 and reasoning and "36" in content


def test_reasoning_parser_on_instruct_leaves_content_empty(sim_factory):
    # The 0.5.6.post1 trap documented in SGLANG.md, reproduced so checks can catch it.
    sim = sim_factory([*INSTRUCT, "--reasoning-parser", "kimi_k2"])
    message = sim.json("/v1/chat/completions", {
        "messages": [{"role": "user", "content": PERCENT}]})["choices"][0]["message"]
    assert message["content"] == "" and "36" in message["reasoning_content"]


def test_instruct_answers_in_content_without_reasoning(sim_factory):
    sim = sim_factory(INSTRUCT)
    message = sim.json("/v1/chat/completions", {
        "messages": [{"role": "user", "content": PERCENT}]})["choices"][0]["message"]
    assert "36" in message["content"] and not message["reasoning_content"]


def test_tool_call_then_tool_result_round_trip(sim_factory):
    sim = sim_factory(INSTRUCT)
    ask = [{"role": "user", "content": "What's the weather in Beijing?"}]
    choice = sim.json("/v1/chat/completions", {"messages": ask, "tools": [WEATHER_TOOL]})[
        "choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert call["id"] == "functions.get_weather:0"
    assert json.loads(call["function"]["arguments"]) == {"location": "Beijing"}
    follow = ask + [choice["message"], {"role": "tool", "tool_call_id": call["id"],
                                        "content": "Sunny, 25C"}]
    final = sim.json("/v1/chat/completions", {"messages": follow, "tools": [WEATHER_TOOL]})[
        "choices"][0]
    assert final["finish_reason"] == "stop" and "Sunny" in final["message"]["content"]


def test_streamed_tool_call_deltas_accumulate_to_valid_json(sim_factory):
    sim = sim_factory(THINKING)
    _, raw = sim.request("/v1/chat/completions", {
        "stream": True, "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "What's the weather in Beijing?"}]})
    chunks = sse(raw)
    args = "".join(tc["function"].get("arguments", "")
                   for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", []))
    assert json.loads(args) == {"location": "Beijing"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_without_tool_parser_the_raw_kimi_markup_leaks_into_content(sim_factory):
    sim = sim_factory(["--model-path", "moonshotai/Kimi-K2-Instruct"])
    message = sim.json("/v1/chat/completions", {
        "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "What's the weather in Beijing?"}]})[
        "choices"][0]["message"]
    assert "tool_calls" not in message
    assert "<|tool_calls_section_begin|>" in message["content"]


def test_generate_honours_stop_strings_and_max_tokens(sim_factory):
    sim = sim_factory(INSTRUCT)
    prompt = "Question: What is 15% of 240?\nAnswer:"
    out = sim.json("/generate", {"text": prompt, "sampling_params": {
        "max_new_tokens": 512, "temperature": 0, "stop": ["Question"]}})
    assert "36" in out["text"] and "Question" not in out["text"]
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": "Question"}
    short = sim.json("/generate", {"text": prompt, "sampling_params": {"max_new_tokens": 3}})
    assert short["meta_info"]["finish_reason"]["type"] == "length"
    assert short["meta_info"]["completion_tokens"] == 3


def test_gsm8k_accuracy_is_configurable_and_deterministic(sim_factory):
    lines = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[:200]]

    def accuracy(sim):
        right = 0
        for item in lines:
            out = sim.json("/generate", {"text": f"Question: {item['question']}\nAnswer:",
                                         "sampling_params": {"stop": ["Question"]}})
            label = item["answer"].replace(",", "").split("####")[-1].strip()
            right += out["text"].replace(",", "").split()[-1] == label
        return right / len(lines)

    env = {"SGLANG_SIM_GSM8K": str(GSM8K_TEST), "SGLANG_SIM_ACCURACY": "0.5"}
    first = accuracy(sim_factory(INSTRUCT, env=env))
    second = accuracy(sim_factory(INSTRUCT, env=env))
    perfect = accuracy(sim_factory(INSTRUCT, env={**env, "SGLANG_SIM_ACCURACY": "1"}))
    assert first == second and 0.4 < first < 0.6
    assert perfect == 1.0


def test_metrics_count_requests(sim_factory):
    sim = sim_factory([*INSTRUCT, "--enable-metrics"])
    sim.json("/generate", {"text": "Question: What is 15% of 240?\nAnswer:"})
    metrics = sim.request("/metrics")[1].decode()
    assert 'sglang:time_to_first_token_seconds_count{model_name="moonshotai/Kimi-K2-Instruct"} 1.0' \
        in metrics
    assert "sglang:num_running_reqs" in metrics


def test_non_zero_rank_serves_only_health(sim_factory):
    sim = sim_factory(["--model-path", "m", "--tp-size", "16", "--nnodes", "2",
                       "--node-rank", "1", "--dist-init-addr", "h:5000"])
    assert sim.request("/health")[0] == 200
    assert sim.request("/v1/models")[0] == 404


def test_sigterm_drains_in_flight_requests(sim_factory):
    sim = sim_factory(INSTRUCT, env={"SGLANG_SIM_TTFT_MS": "1500"})
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        reply=sim.request("/generate", {"text": "Question: What is 15% of 240?\nAnswer:"})))
    worker.start()
    time.sleep(0.5)
    sim.proc.terminate()
    worker.join(10)
    assert result["reply"][0] == 200
    assert sim.proc.wait(10) == 0


def test_latency_model_sets_time_to_first_token(sim_factory):
    sim = sim_factory(INSTRUCT, env={"SGLANG_SIM_TTFT_MS": "300"})
    start = time.monotonic()
    sim.json("/generate", {"text": "Question: What is 15% of 240?\nAnswer:",
                           "sampling_params": {"max_new_tokens": 1}})
    assert time.monotonic() - start >= 0.3


def test_a_stream_keeps_the_models_clock_after_a_late_wake_up():
    """A late wake-up on a loaded machine is made up on the next token, not added to it."""
    pace = _Pace()
    start = time.monotonic()
    time.sleep(0.15)  # the machine was busy: 150 ms gone before the first wait
    pace.wait(0.1)    # already due: no sleep
    assert time.monotonic() - start < 0.2
    pace.wait(0.1)    # due at 200 ms since the stream began
    assert 0.19 <= time.monotonic() - start < 0.3


# ---- What the real server writes and returns that holds its API key (issue 14, fault 3)

def test_start_logs_every_argument_with_the_key_in_clear_like_sglang(sim_factory):
    # SGLang 0.5.6.post1, entrypoints/engine.py: logger.info(f"{server_args=}") with the
    # root logger's "[%Y-%m-%d %H:%M:%S] " prefix, api_key among the fields.
    sim = sim_factory([*THINKING, "--api-key", "s3cret"], api_key="s3cret")
    sim.proc.terminate()
    out = sim.proc.communicate(timeout=20)[0]
    [line] = [line for line in out.splitlines() if "server_args=" in line]
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] server_args=ServerArgs\(model_path=", line)
    assert "api_key='s3cret'" in line and "tensor_parallel_size=8" in line


def test_start_logs_no_arguments_below_info(sim_factory):
    sim = sim_factory([*THINKING, "--api-key", "s3cret", "--log-level", "warning"],
                      api_key="s3cret")
    sim.proc.terminate()
    assert "server_args=" not in sim.proc.communicate(timeout=20)[0]


def test_server_info_returns_the_key_to_a_key_holder_like_sglang(sim_factory, tmp_path):
    # http_server.py, server_info: dataclasses.asdict(server_args), api_key included;
    # /get_server_info is the deprecated name and logs a warning saying so.
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text('api-key: "s3cret"\n')
    sim = sim_factory([*THINKING, "--config", str(secrets)], api_key="s3cret")
    assert sim.request("/get_server_info", key="")[0] == 401
    assert sim.json("/get_server_info")["api_key"] == "s3cret"
    assert sim.json("/server_info")["api_key"] == "s3cret"
    sim.proc.terminate()
    assert "Endpoint '/get_server_info' is deprecated" in sim.proc.communicate(timeout=20)[0]


# ---- Parser names and a refused body (issue 14, fault 8)

def _choices(options, dest):
    [option] = [o for o in options if o["dest"] == dest]
    return option["choices"]


@pytest.mark.parametrize("dest", ["reasoning_parser", "tool_call_parser"])
def test_parser_names_are_exactly_the_pinned_real_parsers(dest):
    from sglang_sim import cli, parsers
    real = json.loads((SHARED / "reference" / "sglang-0.5.6.post1-cli.json").read_text())
    real_options = real["options"] if isinstance(real, dict) else real
    ours = _choices(cli.manifest()["options"], dest)
    assert ours == _choices(real_options, dest)
    if dest == "reasoning_parser":  # and every one of them has its behaviour modelled
        assert parsers.known_reasoning_parsers() == set(ours)


@pytest.mark.parametrize("flag,name", [("--reasoning-parser", "kimi-k2"),
                                       ("--tool-call-parser", "kimi")])
@pytest.mark.parametrize("through_config", [False, True])
def test_an_unknown_parser_name_fails_the_start_like_sglang(tmp_path, flag, name,
                                                            through_config):
    argv = ["--model-path", "moonshotai/Kimi-K2-Thinking", flag, name]
    if through_config:
        config = tmp_path / "config.yaml"
        config.write_text(f"{flag[2:]}: {json.dumps(name)}\n")
        argv = ["--model-path", "moonshotai/Kimi-K2-Thinking", "--config", str(config)]
    result = run_sim(argv)
    assert result.returncode == 2  # argparse's exit, as SGLang's own parser
    assert f"error: argument {flag}: invalid choice: '{name}' (choose from" in result.stderr


def _chat(sim, content, **body):
    return sim.json("/v1/chat/completions", {
        "messages": [{"role": "user", "content": content}], **body})["choices"][0]["message"]


def test_a_known_tool_call_parser_other_than_kimi_k2_extracts_no_kimi_tool_call(sim_factory):
    # SGLang 0.5.6.post1: of its 15 tool-call parsers only kimi_k2 knows Kimi's markup.
    sim = sim_factory(["--model-path", "moonshotai/Kimi-K2-Instruct",
                       "--tool-call-parser", "qwen25"])
    message = _chat(sim, "What's the weather in Beijing?", tools=[WEATHER_TOOL])
    assert "tool_calls" not in message
    assert "<|tool_calls_section_begin|>" in message["content"]


@pytest.mark.parametrize("name,reasoning_in,content_starts", [
    ("kimi", False, "<think>"),           # Kimi-VL's tokens: Kimi-K2's block stays in content
    ("qwen3", True, "To find"),           # <think> ... </think>: split like kimi_k2
    ("minimax-append-think", False, "<think><think>"),
])
def test_a_known_reasoning_parser_splits_thinking_output_as_its_detector_does(
        sim_factory, name, reasoning_in, content_starts):
    sim = sim_factory(["--model-path", "moonshotai/Kimi-K2-Thinking", "--reasoning-parser", name])
    message = _chat(sim, PERCENT)
    assert bool(message["reasoning_content"]) is reasoning_in
    assert message["content"].startswith(content_starts) and "36" in message["content"]


def test_a_non_forced_reasoning_parser_leaves_instruct_content_alone(sim_factory):
    sim = sim_factory([*INSTRUCT, "--reasoning-parser", "qwen3"])
    message = _chat(sim, PERCENT)
    assert "36" in message["content"] and not message["reasoning_content"]


def test_a_wrong_key_gets_401_before_the_body_is_read_past_a_bound(sim_factory):
    # uvicorn stops reading a body at 64 KiB that SGLang's key middleware refused; a
    # client announcing 64 MiB and sending 1 MiB must get its 401 without sending more.
    import socket
    sim = sim_factory([*THINKING, "--api-key", "s3cret"], api_key="s3cret")
    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as conn:
        conn.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 67108864\r\n\r\n")
        try:
            conn.sendall(b"x" * (1 << 20))
        except OSError:
            pass  # the server may close before it took the whole megabyte
        conn.settimeout(10)
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 401"), answer


def test_sigusr1_hangs_the_scheduler_while_the_process_lives_on(sim_factory):
    """The named test fault the watchdog's tests use: after SIGUSR1 the generation probes
    answer 503 after SGLANG_HEALTH_CHECK_TIMEOUT and generation never answers, as SGLang
    with a stuck scheduler; the process lives (systemd would see nothing) and SIGTERM
    still ends it."""
    sim = sim_factory(INSTRUCT, env={"SGLANG_HEALTH_CHECK_TIMEOUT": "1"})
    assert sim.request("/health_generate")[0] == 200
    sim.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while sim.request("/health", timeout=5)[0] == 200:  # the handler runs between requests
        assert time.monotonic() < deadline, "SIGUSR1 did not hang the simulator"
    started = time.monotonic()
    assert sim.request("/health_generate", timeout=5)[0] == 503
    assert time.monotonic() - started >= 0.9                # it waited for the scheduler
    with pytest.raises(OSError):                            # timed out: no answer at all
        sim.request("/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 2}},
                    timeout=1)
    assert sim.proc.poll() is None
    sim.proc.terminate()
    assert sim.proc.wait(10) == 0
    out = sim.proc.stdout.read()
    assert "Health check failed. Server couldn't get a response from detokenizer" in out


def test_health_says_200_while_generation_hangs_when_sglang_is_told_so(sim_factory):
    """Issue 16's fault: with SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION=false, SGLang's bare
    /health answers 200 without generating (0.5.6.post1 http_server.py:426-431); a
    scheduler that hangs after its warm-up then looks healthy to /health and only the
    generation probe tells. SGLANG_SIM_HANG_AFTER_WARMUP makes the hang come at once."""
    sim = sim_factory(INSTRUCT, env={"SGLANG_HEALTH_CHECK_TIMEOUT": "1",
                                     "SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION": "false",
                                     "SGLANG_SIM_HANG_AFTER_WARMUP": "1"})
    assert sim.request("/health", timeout=5)[0] == 200
    assert sim.request("/health_generate", timeout=5)[0] == 503
    with pytest.raises(OSError):
        sim.request("/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 2}},
                    timeout=1)


def test_health_generates_by_default_as_in_sglang(sim_factory):
    sim = sim_factory(INSTRUCT, env={"SGLANG_HEALTH_CHECK_TIMEOUT": "1"})
    sim.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while sim.request("/health", timeout=5)[0] == 200:
        assert time.monotonic() < deadline, "a hung server's /health kept saying 200"
