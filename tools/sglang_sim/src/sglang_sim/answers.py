"""What the simulated model says: deterministic, and right only as often as configured."""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

_PERCENT = re.compile(r"What is (\d+(?:\.\d+)?)% of (\d+(?:\.\d+)?)\?")
_PLACE = re.compile(r"weather (?:like )?in ([A-Z][\w ]*?)[?.!]*$")
_LAST_INT = re.compile(r"\d+")


@dataclass
class Reply:
    content: str
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def tokens(self) -> int:
        words = f"{self.reasoning} {self.content}".split()
        words += [c["function"]["arguments"] for c in self.tool_calls]
        return max(1, len(words))


def gsm8k_label(answer: str) -> Optional[int]:
    """SGLang's rule: drop commas, take the last run of digits."""
    found = _LAST_INT.findall(answer.replace(",", ""))
    return int(found[-1]) if found else None


class Model:
    def __init__(self, accuracy: float, seed: str, gsm8k_path: str = "") -> None:
        self.accuracy = accuracy
        self.seed = seed
        self.gsm8k_path = gsm8k_path
        self._labels: dict[str, int] | None = None
        self._lock = threading.Lock()
        self.labels  # load now if the file is already there: not on the first request

    @property
    def labels(self) -> dict[str, int]:
        """Read lazily: the test set may be staged on the host after the server starts."""
        with self._lock:
            if self._labels is None and self.gsm8k_path and os.path.exists(self.gsm8k_path):
                labels = {}
                with open(self.gsm8k_path, encoding="utf-8") as handle:
                    for line in handle:
                        item = json.loads(line)
                        label = gsm8k_label(item["answer"])
                        if label is not None:
                            labels[item["question"].strip()] = label
                self._labels = labels
            return self._labels or {}

    def _right(self, question: str) -> bool:
        digest = hashlib.sha256(f"{self.seed}\0{question}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < self.accuracy

    def solve(self, question: str) -> str:
        """A worked answer ending in a number; the number is right with `accuracy`."""
        question = question.strip()
        percent = _PERCENT.search(question)
        if percent:
            rate, base = float(percent.group(1)), float(percent.group(2))
            value = rate * base / 100
            shown = int(value) if value == int(value) else value
            if not self._right(question):
                shown = shown + 1
            return (f"To find {percent.group(1)}% of {percent.group(2)}, multiply "
                    f"{percent.group(2)} by {rate / 100:g}. The result is {shown}.")
        if question in self.labels:
            label = self.labels[question]
            value = label if self._right(question) else label + 1
            return f"Working through the quantities step by step gives {value}.\n#### {value}"
        return "I am a simulated model and have no worked answer for this question."

    def complete_prompt(self, prompt: str) -> str:
        """Raw continuation of a few-shot prompt ending in 'Question: ...\\nAnswer:'."""
        question = prompt.rsplit("Question:", 1)[-1].rsplit("Answer:", 1)[0]
        # A real model rambles on into the next shot; the client's stop strings must cut it
        # (its number would otherwise become the last one, and the answer).
        return " " + self.solve(question) + "\n\nQuestion: Tom has 3 apples. How many"

    def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
             thinking: bool) -> Reply:
        last = messages[-1] if messages else {"role": "user", "content": ""}
        text = last.get("content") or ""
        if isinstance(text, list):
            text = " ".join(part.get("text", "") for part in text)
        if last.get("role") == "tool":
            answer = f"Based on the tool result ({text.strip()}), here is your answer."
            return Reply(answer, "The tool answered; summarise it." if thinking else "")
        if tools:
            name = tools[0]["function"]["name"]
            place = _PLACE.search(text.strip())
            arguments = json.dumps({"location": place.group(1) if place else text.strip()})
            call = {"id": f"functions.{name}:0", "index": 0, "type": "function",
                    "function": {"name": name, "arguments": arguments}}
            return Reply("", "The user wants live data; call the tool." if thinking else "",
                         [call])
        question = text.split(":", 1)[-1] if text.startswith("Solve") else text
        reasoning = "Let me reason about this carefully before answering." if thinking else ""
        return Reply(self.solve(question), reasoning)


def kimi_tool_markup(calls: list[dict[str, Any]]) -> str:
    """How Kimi-K2 writes tool calls in raw text, when no tool-call parser extracts them."""
    body = "".join(
        f"<|tool_call_begin|>{c['id']}<|tool_call_argument_begin|>"
        f"{c['function']['arguments']}<|tool_call_end|>" for c in calls)
    return f"<|tool_calls_section_begin|>{body}<|tool_calls_section_end|>"
