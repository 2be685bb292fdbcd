"""What each parser name of the imitated SGLang version does to Kimi-K2's raw output.

argparse already refuses a name the version does not know (the manifest carries its
choices; exit 2 like SGLang). A name it knows is not necessarily one that works for
Kimi-K2, and the verify role must see the difference, so a known but wrong name behaves
here as in SGLang, not as kimi_k2 would:
- reasoning: sglang/srt/parser/reasoning_parser.py maps each name to a detector with a
  start and end token and whether the text is taken as reasoning from its first token
  ("forced"). The table is data, per version: "reasoning_parsers" in
  versions/<version>.rules.json. Kimi-K2-Thinking writes <think>...</think>; Instruct
  writes no such block, so in 0.5.6.post1 the forced kimi_k2 detector takes all of
  Instruct's answer as reasoning; 0.5.23's kimi_k2 detector is not forced.
- tool calls: only kimi_k2's detector knows Kimi's <|tool_calls_section_begin|> markup;
  every other name leaves it in content and returns no tool call (both versions).
tests/conformance checks every name against each version's real parsers on Kimi-shaped
text.
"""
from __future__ import annotations

from . import sim_versions

# The only tool-call parser that extracts Kimi-K2's tool calls.
KIMI_TOOL_CALL_PARSER = "kimi_k2"


def _detectors(version: str | None) -> dict:
    return sim_versions.rules(version or sim_versions.current())["reasoning_parsers"]


def split_reasoning(name: str | None, text: str,
                    version: str | None = None) -> tuple[str, str]:
    """(reasoning_content, content) of the raw text under this --reasoning-parser."""
    if not name:
        return "", text
    detector = _detectors(version)[name]
    mode = detector.get("mode")
    if mode == "empty":  # e.g. gpt-oss: its Harmony parser finds no channel, returns nothing
        return "", ""
    if mode == "prepend_start":  # minimax-append-think
        return "", detector["start"] + text
    if mode == "passthrough":  # its start token is not Kimi's: the text stays content
        return "", text
    if mode == "all_reasoning":  # forced, and its end token is not Kimi's
        return text, ""
    start, end = detector["start"], detector["end"]
    if not detector["forced"] and start not in text:
        return "", text
    body = text.replace(start, "").strip()
    if end not in body:  # cut off before its end token: reasoning, or content (ling3)
        return ("", body) if detector.get("unterminated") == "content" else (body, "")
    reasoning, content = body.split(end, 1)
    return reasoning, content.strip()


def known_reasoning_parsers(version: str | None = None) -> set[str]:
    return set(_detectors(version))
