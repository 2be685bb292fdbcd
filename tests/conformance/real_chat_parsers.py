"""Run SGLang's real reasoning and tool-call parsers on texts (the SGLang venv's Python).

stdin: {"texts": [...], "tool_text": "..."}. stdout: {"reasoning": {name: [[reasoning,
content], ...]}, "tool_calls": {name: number of calls found in tool_text}}.
"""
import json
import sys

from sglang.srt.entrypoints.openai.protocol import Function, Tool
from sglang.srt.function_call.function_call_parser import FunctionCallParser
from sglang.srt.parser.reasoning_parser import ReasoningParser

request = json.load(sys.stdin)
tools = [Tool(type="function", function=Function(
    name="get_weather", parameters={"type": "object",
                                    "properties": {"location": {"type": "string"}}}))]
json.dump({
    "reasoning": {name: [list(ReasoningParser(name).parse_non_stream(text))
                         for text in request["texts"]]
                  for name in ReasoningParser.DetectorMap},
    "tool_calls": {name: len(FunctionCallParser(tools, name).parse_non_stream(
        request["tool_text"])[1]) for name in FunctionCallParser.ToolCallParserEnum},
}, sys.stdout)
