"""What each parser name of SGLang 0.5.6.post1 does to Kimi-K2's raw output.

argparse already refuses a name the pinned version does not know (the manifest carries
its choices; exit 2 like SGLang). A name it knows is not necessarily one that works for
Kimi-K2, and the verify role must see the difference, so a known but wrong name behaves
here as in SGLang, not as kimi_k2 would:
- reasoning: sglang/srt/parser/reasoning_parser.py maps each name to a detector with a
  start and end token and whether the text is taken as reasoning from its first token
  ("forced"). Kimi-K2-Thinking writes <think>...</think>; Instruct writes no such block,
  so a forced detector (kimi_k2 among them) takes all of Instruct's answer as reasoning.
- tool calls: only kimi_k2's detector knows Kimi's <|tool_calls_section_begin|> markup;
  every other name leaves it in content and returns no tool call.
tests/conformance checks every name against the real parsers on Kimi-shaped text.
"""
from __future__ import annotations

THINK = ("<think>", "</think>")

# name -> (start token, end token, forced). gpt-oss and minimax-append-think are special.
_DETECTORS = {
    "deepseek-r1": (*THINK, True),
    "deepseek-v3": (*THINK, False),
    "glm45": (*THINK, False),
    "kimi": ("\u25c1think\u25b7", "\u25c1/think\u25b7", False),  # Kimi-VL's tokens
    "kimi_k2": (*THINK, True),
    "qwen3": (*THINK, False),
    "qwen3-thinking": (*THINK, True),
    "minimax": (*THINK, True),
    "step3": (*THINK, True),
}
# The only tool-call parser that extracts Kimi-K2's tool calls.
KIMI_TOOL_CALL_PARSER = "kimi_k2"


def split_reasoning(name: str | None, text: str) -> tuple[str, str]:
    """(reasoning_content, content) of the raw text under this --reasoning-parser."""
    if not name:
        return "", text
    if name == "gpt-oss":
        # Its Harmony parser finds no channel in Kimi's text and returns nothing at all.
        return "", ""
    if name == "minimax-append-think":
        return "", THINK[0] + text
    start, end, forced = _DETECTORS[name]
    if not forced and start not in text:
        return "", text
    body = text.replace(start, "").strip()
    if end not in body:  # taken as reasoning cut off before its end token
        return body, ""
    reasoning, content = body.split(end, 1)
    return reasoning, content.strip()


def known_reasoning_parsers() -> set[str]:
    return {*_DETECTORS, "gpt-oss", "minimax-append-think"}
