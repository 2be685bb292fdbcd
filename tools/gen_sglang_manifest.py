#!/usr/bin/env python3
"""Write the flag manifest of the installed SGLang, read from its real argument parser.

Run it with the Python of a venv where SGLang is installed (see `make manifest`):

    .venv-sglang/bin/python tools/gen_sglang_manifest.py > manifests/sglang/<version>.json

The launch command builder and the SGLang simulator both read the committed manifest,
so neither needs SGLang (or torch) to know which flags the pinned version accepts.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version

# argparse type callables -> the names the manifest's readers understand.
_TYPE_NAMES = {"int": "int", "float": "float", "json_list_type": "json", "loads": "json"}


def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "store_true"
    if isinstance(action, argparse._StoreFalseAction):
        return "store_false"
    return "store"


def _jsonable(value: object) -> object:
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value


def build_manifest() -> dict:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    options = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        type_name = getattr(action.type, "__name__", None)
        options.append({
            "opts": list(action.option_strings),
            "dest": action.dest,
            "kind": _kind(action),
            "type": _TYPE_NAMES.get(type_name, "str"),
            "nargs": action.nargs,
            "choices": list(action.choices) if action.choices else None,
            "default": _jsonable(action.default),
        })
    return {
        "generator": "tools/gen_sglang_manifest.py",
        "sglang_version": version("sglang"),
        "allow_abbrev": parser.allow_abbrev,
        "options": options,
    }


def main() -> int:
    json.dump(build_manifest(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
