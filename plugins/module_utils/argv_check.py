"""One reading of a command line against a parser's manifest (each option's opts, dest,
nargs, type and choices), as argparse reads it but stricter: every flag written out in
full (argparse would take a prefix, and a prefix becomes ambiguous when a later version
adds a flag), every value after its flag. The SGLang launch builder
(plugins/filter/sglang_launch.py) and the gateway's (plugins/filter/sglang_router.py) each
add their own rules on the occurrences it returns."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

_CONVERT: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "json": json.loads}


@dataclass
class Occurrence:
    flag: str
    option: dict[str, Any]
    values: list[str]


def read_argv(argv: list[Any], options: dict[str, dict[str, Any]], unknown: str,
              takes_value: Callable[[dict[str, Any]], bool], suffix: str = ""
              ) -> tuple[list[Occurrence], list[str]]:
    """The flags argv gives, with their values, and every problem of its shape or values.
    options: flag -> option; unknown: what an unknown flag "is not" ("a flag of SGLang X");
    suffix: appended to each message (which parser said so)."""
    found: list[Occurrence] = []
    problems: list[str] = []
    i = 0
    while i < len(argv):
        token = str(argv[i])
        i += 1
        if not token.startswith("--"):
            problems.append(f"stray argument {token!r}: every value must follow its flag")
            continue
        flag, eq, inline = token.partition("=")
        option = options.get(flag)
        if option is None:
            full = sorted(o for o in options if o.startswith(flag))
            problems.append(f"{flag} is an abbreviation of {full[0]}: write the full flag"
                            if len(full) == 1 else f"{flag} is not {unknown}{suffix}")
            continue
        if not takes_value(option):
            if eq:
                problems.append(f"{flag} takes no value{suffix}")
            found.append(Occurrence(flag, option, []))
            continue
        nargs = option["nargs"]
        values = [inline] if eq else []
        while not eq and i < len(argv) and not str(argv[i]).startswith("--"):
            values.append(str(argv[i]))
            i += 1
            if nargs in (None, "?") or (isinstance(nargs, int) and len(values) == nargs):
                break
        if nargs is None and len(values) != 1:
            problems.append(f"{flag} expects one value{suffix}")
        elif nargs == "+" and not values:
            problems.append(f"{flag} expects at least one value{suffix}")
        elif isinstance(nargs, int) and len(values) != nargs:
            problems.append(f"{flag} expects {nargs} value(s){suffix}")
        problems += [p for p in (_value_problem(flag, option, v, suffix) for v in values) if p]
        found.append(Occurrence(flag, option, values))
    return found, problems


def _value_problem(flag: str, option: dict[str, Any], value: str, suffix: str) -> str | None:
    try:
        converted = _CONVERT.get(option["type"], str)(value)
    except ValueError:
        return f"{flag} expects {option['type']}, got {value!r}{suffix}"
    choices = option["choices"]
    if choices and converted not in choices and value not in choices:
        return f"{flag} {value!r} is not one of {', '.join(map(str, choices))}{suffix}"
    return None
