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
    if isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x (0.5.23)
        return "boolean_optional"
    # SGLang's own retired-flag actions (0.5.23: sglang/srt/arg_groups/argparse_actions.py),
    # told apart by name: the module moved between releases. Each logs a deprecation
    # warning and stores what its name says, or stops the launch (DeprecatedAction).
    return {"DeprecatedStoreTrueAction": "deprecated_store_true",
            "DeprecatedStoreConstAction": "deprecated_store_const",
            "DeprecatedAliasStoreAction": "deprecated_alias",
            "DeprecatedAction": "deprecated"}.get(type(action).__name__, "store")


def _choices(choices: object) -> list | None:
    if not choices:
        return None
    # A set (0.5.23's --sampling-backend) iterates in a different order in every process.
    return sorted(choices) if isinstance(choices, (set, frozenset)) else list(choices)


def _deprecation(action: argparse.Action) -> dict | None:
    """What a retired flag's action says and stores, for the builder and the simulator."""
    if not type(action).__name__.startswith("Deprecated"):
        return None
    return {key: _jsonable(getattr(action, key)) for key in
            ("new_flag", "const_value", "error_message") if hasattr(action, key)}


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
        option = {
            "opts": list(action.option_strings),
            "dest": action.dest,
            "kind": _kind(action),
            "type": _TYPE_NAMES.get(type_name, "str"),
            "nargs": action.nargs,
            "choices": _choices(action.choices),
            "default": _jsonable(action.default),
        }
        deprecation = _deprecation(action)
        if deprecation is not None:
            option["deprecated"] = deprecation
        options.append(option)
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
