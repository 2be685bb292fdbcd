#!/usr/bin/env python3
"""Write the flag manifest of a gateway wheel (smg or sglang-router), read from its parser.

Both gateways build their command line with `<package>.router_args.RouterArgs.add_cli_args`
(the parser behind `smg launch --help` and `python -m sglang_router.launch_router --help`).
This tool builds that parser from a wheel and dumps every option, the way
tools/gen_sglang_manifest.py does for SGLang:

    python tools/gen_router_manifest.py build/wheelhouse-smg/smg-1.13.0-*.whl \\
        > manifests/router/smg-1.13.0.json

The wheel is unpacked into a temporary directory and imported from there (its native
module is abi3: any CPython 3.8+ on the wheel's platform loads it; none of its pip
dependencies is imported by the parser). The environment is emptied first: some
defaults are read from environment variables, and the manifest must not depend on them.
roles/sglang_router checks every rendered router command against the committed manifest
of the chosen gateway (plugins/filter/sglang_router.py); `make router-manifests` rewrites
them, and tests/unit/test_router_manifest.py checks a fresh dump equals the committed one.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import zipfile
from importlib import metadata

# Run as a script beside it: the same JSON rule for a default as SGLang's manifest.
from gen_sglang_manifest import _jsonable

# Importable name of each gateway package.
PACKAGES = {"smg": "smg", "sglang-router": "sglang_router"}
_TYPES = {"int": "int", "_non_negative_int": "int", "float": "float", "str": "str"}


def _option(action: argparse.Action) -> dict:
    kind = "flag" if action.nargs == 0 else "value"
    return {
        "opts": list(action.option_strings),
        "dest": action.dest,
        "kind": kind,
        "type": None if kind == "flag" else _TYPES.get(getattr(action.type, "__name__", "str"), "str"),
        "nargs": action.nargs,
        "repeatable": isinstance(action, (argparse._AppendAction, argparse._ExtendAction)),
        "choices": sorted(map(str, action.choices)) if action.choices else None,
        "default": _jsonable(action.default),
    }


def build_manifest(package: str, module_name: str, version: str) -> dict:
    router_args = importlib.import_module(f"{module_name}.router_args")
    parser = argparse.ArgumentParser()
    router_args.RouterArgs.add_cli_args(parser, use_router_prefix=False)
    options = [_option(a) for a in parser._actions
               if a.option_strings and not isinstance(a, argparse._HelpAction)]
    return {
        "generator": "tools/gen_router_manifest.py",
        "package": package,
        "version": version,
        "allow_abbrev": parser.allow_abbrev,
        "options": options,
    }


def package_of(wheel: str) -> str:
    name = os.path.basename(wheel).split("-", 1)[0].replace("_", "-").lower()
    if name not in PACKAGES:
        raise SystemExit(f"{wheel}: not a gateway wheel (known: {', '.join(PACKAGES)})")
    return name


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("wheel", help="the gateway's wheel (smg-*.whl or sglang_router-*.whl)")
    args = parser.parse_args(argv)
    package = package_of(args.wheel)
    os.environ.clear()
    with tempfile.TemporaryDirectory() as unpacked:
        with zipfile.ZipFile(args.wheel) as wheel:
            wheel.extractall(unpacked)
        # The wheel's metadata, not <package>.version: smg 1.13.0's says 1.1.0.
        dist_info = next(p for p in os.listdir(unpacked) if p.endswith(".dist-info"))
        version = metadata.Distribution.at(os.path.join(unpacked, dist_info)).version
        sys.path.insert(0, unpacked)
        manifest = build_manifest(package, PACKAGES[package], version)
    json.dump(manifest, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
