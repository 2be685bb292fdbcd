"""Smoke checks of one SGLang endpoint: stdlib only, runs on the managed host.

Each check returns a record: name, passed, seconds, and on failure what was expected and
what came back (truncated, secrets redacted). The prompts are the published Kimi-K2
examples.
"""
from __future__ import annotations

import json
import re
import time

from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_client import Endpoint, TransportError, parse_sse

PERCENT_PROMPT = "Solve this problem step by step: What is 15% of 240?"
PERCENT_ANSWER = re.compile(r"(?<![\d.])36(?![\d])")
WEATHER_QUESTION = "What's the weather in Beijing?"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather",
    "description": "Get the current weather of a location.",
    "parameters": {"type": "object", "required": ["location"],
                   "properties": {"location": {"type": "string",
                                               "description": "City name"}}}}}
WEATHER_RESULT = '{"location": "Beijing", "weather": "Sunny", "temperature_c": 25}'
TRUNCATE = 300
# A prefill's bootstrap server answers GET /health with "OK" at once (0.5.6.post1
# disaggregation/common/conn.py:500-503; 0.5.23 common/conn.py:3073, where the decode side
# probes it too, :2019): seconds are plenty.
BOOTSTRAP_TIMEOUT = 10.0
# The checks that generate: behind a bootstrap server this node cannot reach, each would
# wait out SGLANG_DISAGGREGATION_BOOTSTRAP_TIMEOUT (300 s, mooncake/conn.py:198-199) first.
GENERATING = ("chat", "chat_stream", "tool_call", "tool_call_stream", "tool_round_trip")


class CheckFailed(Exception):
    def __init__(self, expected, got):
        super().__init__(expected)
        self.expected = expected
        self.got = got


def require(condition, expected, got):
    if not condition:
        raise CheckFailed(expected, got)


def accumulate_chat_stream(payloads):
    """Fold chat.completion.chunk deltas into one message."""
    content, reasoning, calls, finish = [], [], {}, None
    for payload in payloads:
        chunk = json.loads(payload)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or "")
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call.get("index", 0),
                                        {"id": None, "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {"content": "".join(content), "reasoning": "".join(reasoning),
            "tool_calls": [calls[i] for i in sorted(calls)], "finish_reason": finish}


def _message(answer):
    require(answer.status == 200, "HTTP 200", f"HTTP {answer.status}: {answer.text()}")
    choice = answer.json()["choices"][0]
    message = choice["message"]
    calls = [{"id": c.get("id"), "name": c["function"]["name"],
              "arguments": c["function"]["arguments"]}
             for c in message.get("tool_calls") or []]
    return {"content": message.get("content") or "",
            "reasoning": message.get("reasoning_content") or "",
            "tool_calls": calls, "finish_reason": choice.get("finish_reason")}


class Smoke:
    def __init__(self, endpoint, expect):
        self.endpoint = endpoint
        self.expect = expect

    # ----------------------------------------------------------- helpers
    def chat(self, messages, stream=False, tools=None):
        body = {"model": self.expect["served_model_name"], "messages": messages,
                "temperature": 0, "max_tokens": self.expect.get("max_tokens", 2048),
                "stream": stream}
        if tools:
            body["tools"] = tools
        answer = self.endpoint.call("/v1/chat/completions", body)
        if not stream:
            return _message(answer)
        require(answer.status == 200, "HTTP 200", f"HTTP {answer.status}: {answer.text()}")
        payloads, done = parse_sse(answer.body.decode("utf-8", "replace"))
        require(done, "an SSE stream ending with data: [DONE]", answer.text())
        return accumulate_chat_stream(payloads)

    def answer_shape(self, message):
        """Thinking: reasoning and answer apart. Instruct: an answer, no reasoning."""
        shown = json.dumps({k: message[k] for k in ("content", "reasoning")})
        if self.expect["reasoning"]:
            require(message["reasoning"].strip() and message["content"].strip()
                    and "<think>" not in message["content"],
                    "non-empty reasoning_content separate from a non-empty content", shown)
        else:
            require(message["content"].strip() and not message["reasoning"].strip(),
                    "non-empty content and no reasoning_content (a reasoning parser on a "
                    "non-thinking model empties content)", shown)

    def tool_call_shape(self, message):
        shown = json.dumps(message)
        require(message["finish_reason"] == "tool_calls" and message["tool_calls"],
                "finish_reason tool_calls with a tool call", shown)
        call = message["tool_calls"][0]
        require(call["name"] == "get_weather", "a get_weather call", shown)
        try:
            arguments = json.loads(call["arguments"])
        except ValueError:
            raise CheckFailed("arguments that are valid JSON", shown)
        require(isinstance(arguments, dict) and arguments.get("location"),
                "arguments with a location", shown)
        return call

    # ----------------------------------------------------------- checks
    def check_health(self):
        answer = self.endpoint.call("/health", auth=False)
        require(answer.status == 200, "HTTP 200", f"HTTP {answer.status}: {answer.text()}")

    def check_health_generate(self):
        # SGLang runs this probe inside the server (a prefill or decode half uses a fake
        # bootstrap peer), so it shows the half generates without its router.
        answer = self.endpoint.call("/health_generate", auth=False)
        require(answer.status == 200, "HTTP 200", f"HTTP {answer.status}: {answer.text()}")

    def check_models(self):
        answer = self.endpoint.call("/v1/models")
        require(answer.status == 200, "HTTP 200", f"HTTP {answer.status}: {answer.text()}")
        ids = [m["id"] for m in answer.json()["data"]]
        require(ids == [self.expect["served_model_name"]],
                f"exactly [{self.expect['served_model_name']!r}]", repr(ids))

    def check_model_info(self):
        answer = self.endpoint.call("/get_model_info")
        require(answer.status == 200, "HTTP 200", f"HTTP {answer.status}: {answer.text()}")
        path = answer.json().get("model_path")
        require(path == self.expect["model_path"], self.expect["model_path"], repr(path))

    def check_auth(self):
        # Generation is what the key protects; sglang-router, unlike SGLang, serves its
        # /v1/models to anyone, so a model list is no test of the key.
        body = {"model": self.expect["served_model_name"], "max_tokens": 1,
                "messages": [{"role": "user", "content": "Say OK."}]}
        for label, key in (("no key", ""), ("a wrong key", "wrong-" + "x" * 8)):
            answer = self.endpoint.call("/v1/chat/completions", body, key=key)
            require(answer.status == 401, f"HTTP 401 with {label}", f"HTTP {answer.status}")

    def check_chat(self):
        message = self.chat([{"role": "user", "content": PERCENT_PROMPT}])
        self.answer_shape(message)
        require(PERCENT_ANSWER.search(message["content"]), "36 in content",
                message["content"])

    def check_chat_stream(self):
        message = self.chat([{"role": "user", "content": PERCENT_PROMPT}], stream=True)
        self.answer_shape(message)
        require(PERCENT_ANSWER.search(message["content"]), "36 in streamed content",
                message["content"])

    def check_tool_call(self):
        self.tool_call_shape(self.chat([{"role": "user", "content": WEATHER_QUESTION}],
                                       tools=[WEATHER_TOOL]))

    def check_tool_call_stream(self):
        self.tool_call_shape(self.chat([{"role": "user", "content": WEATHER_QUESTION}],
                                       stream=True, tools=[WEATHER_TOOL]))

    def check_tool_round_trip(self):
        ask = [{"role": "user", "content": WEATHER_QUESTION}]
        call = self.tool_call_shape(self.chat(ask, tools=[WEATHER_TOOL]))
        follow = ask + [
            {"role": "assistant", "content": "", "tool_calls": [{
                "id": call["id"], "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]}}]},
            {"role": "tool", "tool_call_id": call["id"], "name": call["name"],
             "content": WEATHER_RESULT}]
        final = self.chat(follow, tools=[WEATHER_TOOL])
        require(final["finish_reason"] == "stop" and final["content"].strip(),
                "a final answer (finish_reason stop, non-empty content)", json.dumps(final))

    def check_bootstrap(self, address):
        expected = (f"HTTP 200 from the prefill's bootstrap server {address}, which the decode "
                    "side asks before every KV transfer (unreachable: each request through "
                    "the router waits, then fails; check the port and the interface)")
        try:
            answer = Endpoint(f"http://{address}").call("/health", auth=False,
                                                         timeout=BOOTSTRAP_TIMEOUT)
        except TransportError as err:
            raise CheckFailed(expected, str(err))
        require(answer.status == 200, expected, f"HTTP {answer.status}: {answer.text()}")

    def check_metrics(self):
        answer = self.endpoint.call("/metrics", auth=False)
        require(answer.status == 200 and b"sglang:" in answer.body,
                "HTTP 200 with sglang: metrics", f"HTTP {answer.status}: {answer.text()}")

    # ----------------------------------------------------------- plan
    def plan(self):
        """[(check, its argument)]: health first, then the bootstrap servers this node
        depends on (every rank of a decode server takes KV through them), then the rest."""
        checks = [(name, None) for name in self.names()]
        bootstrap = [("bootstrap", address) for address in self.expect.get("bootstrap") or []]
        return checks[:1] + bootstrap + checks[1:]

    def names(self):
        if self.expect["rank"] >= 1:  # non-zero ranks serve only a stand-in /health
            return ["health"]
        names = ["health", "models", "model_info"]
        if self.expect["api_key"]:
            names.append("auth")
        if self.expect.get("disaggregation_mode"):
            # A prefill or decode half generates only when its router pairs it with the
            # other half: chats and tool calls are checked through the router.
            return ["health", "health_generate"] + names[1:] + (
                ["metrics"] if self.expect["metrics"] else [])
        names += ["chat", "chat_stream"]
        if self.expect["tool_calls"]:
            names += ["tool_call", "tool_call_stream", "tool_round_trip"]
        if self.expect["metrics"]:
            names.append("metrics")
        return names

    def run(self):
        records, unreachable = [], []
        for name, address in self.plan():
            start = time.monotonic()
            record = {"name": f"{name} {address}" if address else name, "passed": True}
            try:
                if name in GENERATING and unreachable:
                    raise CheckFailed("a reachable bootstrap server first", "not run: this node "
                                      f"cannot reach {', '.join(unreachable)}")
                getattr(self, "check_" + name)(*([address] if address else []))
            except CheckFailed as failure:
                record.update(passed=False, expected=failure.expected,
                              got=self.redact(failure.got))
            except (TransportError, ValueError, KeyError, IndexError, TypeError) as err:
                record.update(passed=False, expected="an answer",
                              got=self.redact(f"{type(err).__name__}: {err}"))
            if address and not record["passed"]:
                unreachable.append(address)
            record["seconds"] = round(time.monotonic() - start, 3)
            records.append(record)
        return records

    def redact(self, text):
        text = str(text)
        if self.endpoint.api_key:
            text = text.replace(self.endpoint.api_key, "<redacted>")
        return text if len(text) <= TRUNCATE else text[:TRUNCATE] + "...(truncated)"


def run_smoke(base_url, api_key, expect, timeout):
    return Smoke(Endpoint(base_url, api_key, timeout), expect).run()
