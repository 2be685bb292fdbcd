"""SGLang's HTTP API, simulated: the routes, auth rules, states and SSE framing."""
from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from . import __version__, disaggregation, metrics, parsers
from .log import log
from .answers import Model, Reply, kimi_tool_markup

SIMULATED_VERSION = "0.5.6.post1"
# SGLang's /health and /health_generate wait this long (SGLANG_HEALTH_CHECK_TIMEOUT,
# http_server.py) for any answer of the scheduler, then answer 503.
DEFAULT_HEALTH_CHECK_TIMEOUT = 20.0
# uvicorn's HIGH_WATER_LIMIT (protocols/http/flow_control.py): the request body it buffers
# before it pauses reading, all a request refused by SGLang's key check gets read of it.
UNAUTHORISED_READ_LIMIT = 65536


class _Pace:
    """Streams on the latency model's clock: each wait ends at the stream's start plus the
    model's delays so far, so a late wake-up (a loaded test machine) is made up on the
    next token instead of adding to every one. The model is the GPU's time, which the
    controller's CPU load does not slow."""

    def __init__(self) -> None:
        self.due = time.monotonic()

    def wait(self, seconds: float) -> None:
        self.due += seconds
        time.sleep(max(0.0, self.due - time.monotonic()))


@dataclass
class Timing:
    """The latency model: a fixed time to first token, and an inter-token latency that
    grows with the requests decoding alongside (a real server's batch gets slower)."""
    ttft_s: float = 0.0
    itl_s: float = 0.0
    itl_per_running_s: float = 0.0


@dataclass
class State:
    args: argparse.Namespace
    model: Model
    timing: Timing
    ready: bool = False
    draining: bool = False
    # A test fault (SIGUSR1, launch_server.py): the scheduler stops answering while the
    # process and its HTTP server live on, as a stuck GPU kernel or NCCL collective
    # leaves SGLang. Generation waits for ever (until a drain), the generation probes
    # time out; systemd sees nothing.
    hung: bool = False
    # --disaggregation-mode prefill|decode: that half's part of the transfer
    # (disaggregation.py); None for a server that does both.
    pd: Any = None
    health_check_timeout: float = DEFAULT_HEALTH_CHECK_TIMEOUT
    # SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION (SGLang's, default true): false makes bare
    # /health answer 200 without a generation once the server is up, hung or not
    # (0.5.6.post1 http_server.py:426-431); /health_generate always generates.
    health_generates: bool = True
    stopping: threading.Event = field(default_factory=threading.Event)
    inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    metrics: metrics.Metrics = field(default_factory=metrics.Metrics)
    # The imitated SGLang version and its endpoints (versions/<version>.rules.json).
    version: str = SIMULATED_VERSION
    endpoints: dict[str, Any] = field(default_factory=lambda: {"ready": None})

    def itl(self) -> float:
        return self.timing.itl_s + self.timing.itl_per_running_s * max(self.inflight - 1, 0)

    @property
    def served_name(self) -> str:
        return self.args.served_model_name or self.args.model_path

    @property
    def thinking(self) -> bool:
        return "thinking" in self.args.model_path.lower()


def _tokens(text: str) -> list[str]:
    """Whitespace-led words stand in for tokens: joining them gives the text back."""
    return re.findall(r"\s*\S+", text)


def _apply_stop(text: str, stop: list[str]) -> tuple[str, str | None]:
    cut = [(text.index(s), s) for s in stop if s and s in text]
    if not cut:
        return text, None
    at, matched = min(cut)
    return text[:at], matched


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: State  # set on the subclass built by make_server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: journald gets enough
        pass

    # ------------------------------------------------------------ plumbing
    def _json(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _text(self, code: int, body: str, ctype: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for event in events:
            payload = event if isinstance(event, str) else json.dumps(event)
            self.wfile.write(f"data: {payload}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _body(self) -> dict[str, Any]:
        return json.loads(self._raw_body or b"{}")

    def _authorised(self) -> bool:
        key = self.state.args.api_key
        open_paths = ("/health", "/metrics") + ((self.state.endpoints["ready"],)
                                                if self.state.endpoints["ready"] else ())
        if not key or self.path.startswith(open_paths):
            return True
        return self.headers.get("Authorization", "") == f"Bearer {key}"

    # ------------------------------------------------------------ dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        state = self.state
        length = int(self.headers.get("Content-Length") or 0)
        if state.args.node_rank == 0 and not self._authorised():
            # SGLang's key check is a middleware that answers 401 before the app reads the
            # body; uvicorn buffers at most its flow-control limit of it and stops reading
            # the socket. So does this, closing a connection whose body is left unread: a
            # wrong key costs the server at most that much.
            self.rfile.read(min(length, UNAUTHORISED_READ_LIMIT))
            if length > UNAUTHORISED_READ_LIMIT:
                self.close_connection = True
            return self._json(401, {"error": "Unauthorized"})
        # Read the body before any other early answer (404, 503): bytes left unread would
        # be taken for the next request on a kept-alive connection (a router reuses them).
        self._raw_body = self.rfile.read(length)
        if path in ("/health", "/health_generate"):
            # /health generates too, unless SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION is
            # false (0.5.6.post1) or the version's /health never does (0.5.23).
            probes = path == "/health_generate" or (
                state.health_generates and state.endpoints.get("health_generates", True))
            if state.hung and state.ready and not state.draining and probes:
                return self._health_hung()
            ok = state.ready and not state.draining
            return self._text(200 if ok else 503, "" if ok else "warming up or draining")
        if state.args.node_rank >= 1:  # SGLang's non-zero ranks serve only /health
            return self._json(404, {"detail": "Not Found"})
        if path == state.endpoints["ready"]:  # 0.5.23: ready for new requests, no probe
            ok = state.ready and not state.draining
            return self._text(200 if ok else 503, "")
        routes = {
            ("GET", "/v1/models"): self._models,
            ("GET", "/get_model_info"): self._get_model_info,
            ("GET", "/model_info"): self._model_info,
            ("GET", "/get_server_info"): self._get_server_info,
            ("GET", "/server_info"): self._server_info,
            ("GET", "/metrics"): self._metrics,
            ("POST", "/generate"): self._generate,
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/flush_cache"): lambda: self._text(200, "Cache flushed."),
        }
        route = routes.get((method, path))
        if route is None:
            return self._json(404, {"detail": "Not Found"})
        if method == "GET":
            return route()
        if state.draining or not state.ready:
            return self._json(503, {"error": "server is not ready"})
        with state.lock:
            state.inflight += 1
        try:
            if state.hung:  # no token ever comes; a drain ends the wait, as SIGKILL would
                state.stopping.wait()
                return self._json(503, {"error": "server is not ready"})
            if state.pd is not None and path in disaggregation.GENERATION_ROUTES:
                failure = state.pd.admit(self._body())
                if failure:  # SGLang aborts the request: prepare_abort(..., 500)
                    return self._json(500, {"error": {"message": failure, "code": 500}})
            route()
        finally:
            with state.lock:
                state.inflight -= 1

    def _health_hung(self) -> None:
        # SGLang 0.5.6.post1 (http_server.py, health_generate): /health runs a one-token
        # generation too (SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION defaults to true); with
        # no answer from the scheduler within the timeout it logs this and answers 503.
        started = time.strftime("%H:%M:%S")
        if self.state.stopping.wait(self.state.health_check_timeout):
            return self._text(503, "draining")
        log(f"Health check failed. Server couldn't get a response from detokenizer for last "
            f"{self.state.health_check_timeout:g} seconds. tic start time: {started}. "
            f"last_heartbeat time: {started}", "error")
        self._text(503, "")

    # ------------------------------------------------------------ info routes
    def _models(self) -> None:
        name = self.state.served_name
        self._json(200, {"object": "list", "data": [{
            "id": name, "object": "model", "created": 0, "owned_by": "sglang",
            "root": name, "max_model_len": self.state.args.context_length or 131072}]})

    def _get_model_info(self) -> None:
        log("Endpoint '/get_model_info' is deprecated and will be removed in a future "
            "version. Please use '/model_info' instead.")
        self._model_info()

    def _model_info(self) -> None:
        args = self.state.args
        self._json(200, {"model_path": args.model_path,
                         "tokenizer_path": args.tokenizer_path or args.model_path,
                         "is_generation": True, "weight_version": "default"})

    def _get_server_info(self) -> None:
        log("Endpoint '/get_server_info' is deprecated and will be removed in a future "
            "version. Please use '/server_info' instead.")
        self._server_info()

    def _server_info(self) -> None:
        # Like SGLang (http_server.py, server_info): every server argument, the API key
        # among them, to whoever holds the key.
        info = dict(vars(self.state.args))
        info["version"] = self.state.version
        info["simulator"] = f"sglang_sim {__version__}: a test double, not SGLang"
        self._json(200, info)

    def _metrics(self) -> None:
        if not self.state.args.enable_metrics:
            return self._json(404, {"detail": "Not Found"})
        self._text(200, metrics.render(self.state.args, self.state.metrics, self.state.inflight),
                   "text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------ generation
    def _account(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.state.metrics.observe(prompt_tokens, completion_tokens, self.state.timing.ttft_s,
                                   self.state.itl())

    def _generate(self) -> None:
        body = self._body()
        params = body.get("sampling_params") or {}
        texts = body.get("text")
        if texts is None and body.get("input_ids") is not None:  # --tokenize-prompt clients
            texts = " ".join(f"t{i}" for i in body["input_ids"])
        batch = isinstance(texts, list)
        limit = int(params.get("max_new_tokens", 128))
        results = []
        for prompt in (texts if batch else [texts or ""]):
            tokens = _tokens(self.state.model.complete_prompt(prompt))
            if params.get("ignore_eos"):
                # Like a real model told to ignore EOS: exactly max_new_tokens tokens.
                text = "".join((tokens * (limit // max(len(tokens), 1) + 1))[:limit])
                finish = {"type": "length", "length": limit}
            else:
                text, matched = _apply_stop("".join(tokens[:limit]), params.get("stop") or [])
                finish = ({"type": "stop", "matched": matched} if matched or limit >= len(tokens)
                          else {"type": "length", "length": limit})
            n_out = len(_tokens(text))
            results.append((prompt, text, n_out, finish))
        start = time.monotonic()
        if body.get("stream") and not batch:
            return self._sse(self._generate_stream(*results[0], start))
        time.sleep(self.state.timing.ttft_s + self.state.itl() * max(
            r[2] for r in results))
        out = []
        for prompt, text, n_out, finish in results:
            n_in = len(prompt.split())
            self._account(n_in, n_out)
            out.append({"text": text, "meta_info": {
                "id": uuid.uuid4().hex, "finish_reason": finish, "prompt_tokens": n_in,
                "completion_tokens": n_out, "cached_tokens": 0,
                "e2e_latency": time.monotonic() - start}})
        self._json(200, out if batch else out[0])

    def _generate_stream(self, prompt: str, text: str, n_out: int, finish: dict[str, Any],
                         start: float) -> Iterator[Any]:
        pace = _Pace()
        pace.wait(self.state.timing.ttft_s)
        tokens = _tokens(text) or [""]
        for i in range(1, len(tokens) + 1):
            if i > 1:
                pace.wait(self.state.itl())
            done = i == len(tokens)
            yield {"text": "".join(tokens[:i]), "meta_info": {
                "id": "stream", "prompt_tokens": len(prompt.split()), "completion_tokens": i,
                "finish_reason": finish if done else None,
                "e2e_latency": time.monotonic() - start}}
        self._account(len(prompt.split()), n_out)

    def _chat_reply(self, body: dict[str, Any]) -> tuple[Reply, str]:
        args = self.state.args
        tools = body.get("tools") or []
        if body.get("tool_choice") == "none":
            tools = []
        reply = self.state.model.chat(body.get("messages") or [], tools, self.state.thinking)
        # The model's raw text, as Kimi-K2 writes it, then the parsers SGLang would run on
        # it (parsers.py): a known name that does not fit Kimi-K2 fails as in SGLang.
        content, calls = reply.content, reply.tool_calls
        if calls and args.tool_call_parser != parsers.KIMI_TOOL_CALL_PARSER:
            content, calls = content + kimi_tool_markup(calls), []
        raw = f"<think>{reply.reasoning}</think>{content}" if reply.reasoning else content
        reasoning, content = parsers.split_reasoning(args.reasoning_parser, raw,
                                                     self.state.version)
        reply = Reply(content, reasoning, calls)
        return reply, "tool_calls" if reply.tool_calls else "stop"

    def _chat(self) -> None:
        body = self._body()
        reply, finish = self._chat_reply(body)
        n_in = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
        n_out = reply.tokens()
        created = int(time.time())
        rid = uuid.uuid4().hex
        base = {"id": rid, "created": created, "model": body.get("model") or
                self.state.served_name}
        if body.get("stream"):
            usage = (body.get("stream_options") or {}).get("include_usage")
            return self._sse(self._chat_stream(base, reply, finish, n_in, n_out, usage))
        time.sleep(self.state.timing.ttft_s + self.state.itl() * n_out)
        self._account(n_in, n_out)
        message: dict[str, Any] = {"role": "assistant",
                                   "content": reply.content or (None if reply.tool_calls
                                                                else ""),
                                   "reasoning_content": reply.reasoning or None}
        if reply.tool_calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"}
                                     for c in reply.tool_calls]
        self._json(200, {**base, "object": "chat.completion", "choices": [{
            "index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                      "total_tokens": n_in + n_out}})

    def _chat_stream(self, base: dict[str, Any], reply: Reply, finish: str, n_in: int,
                     n_out: int, usage: bool) -> Iterator[Any]:
        chunk = {**base, "object": "chat.completion.chunk"}

        def delta(d: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
            return {**chunk, "choices": [{"index": 0, "delta": d, "finish_reason": reason}]}

        yield delta({"role": "assistant", "content": ""})
        pace = _Pace()
        pace.wait(self.state.timing.ttft_s)
        for key, text in (("reasoning_content", reply.reasoning), ("content", reply.content)):
            for token in _tokens(text):
                yield delta({key: token})
                pace.wait(self.state.itl())
        for call in reply.tool_calls:
            args = call["function"]["arguments"]
            yield delta({"tool_calls": [{"index": call["index"], "id": call["id"],
                                         "type": "function", "function": {
                                             "name": call["function"]["name"],
                                             "arguments": ""}}]})
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                pace.wait(self.state.itl())
                yield delta({"tool_calls": [{"index": call["index"],
                                             "function": {"arguments": piece}}]})
        self._account(n_in, n_out)
        yield delta({}, finish)
        if usage:
            yield {**chunk, "choices": [], "usage": {
                "prompt_tokens": n_in, "completion_tokens": n_out,
                "total_tokens": n_in + n_out}}


def make_server(state: State, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"state": state})
    # socketserver's backlog of 5 would stall a burst of 128 clients on SYN retries.
    server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 1024})
    server = server_class((host, port), handler)
    server.daemon_threads = True
    return server
