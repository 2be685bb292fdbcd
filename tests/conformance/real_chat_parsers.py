"""Run SGLang's real reasoning and tool-call parsers on texts (the SGLang venv's Python).

stdin: {"texts": [...], "tool_text": "..."}. stdout: {"reasoning": {name: [[reasoning,
content], ...] | "cannot be built bare: ..."}, "tool_calls": {name: number of calls
found in tool_text | "cannot be built bare: ..."}}.
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


def reasoning(name):
    try:
        return [list(ReasoningParser(name).parse_non_stream(text)) for text in request["texts"]]
    except ValueError as error:  # 0.5.23's response_template needs a template to be built
        return f"cannot be built bare: {error}"


def tool_calls(name):
    try:
        return len(FunctionCallParser(tools, name).parse_non_stream(request["tool_text"])[1])
    except ValueError as error:
        return f"cannot be built bare: {error}"


json.dump({
    "reasoning": {name: reasoning(name) for name in ReasoningParser.DetectorMap},
    "tool_calls": {name: tool_calls(name) for name in FunctionCallParser.ToolCallParserEnum},
}, sys.stdout)
