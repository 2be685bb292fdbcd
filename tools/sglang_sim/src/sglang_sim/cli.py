"""Parse argv exactly as the pinned SGLang parser does, from the committed manifest."""
from __future__ import annotations

import argparse
import json
from importlib import resources
from typing import Any

# argparse type names in the manifest -> callables.
_TYPES = {"int": int, "float": float, "str": str, "json": json.loads}


def manifest() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("manifest.json").read_text())


def build_parser(spec: dict[str, Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sglang_sim.launch_server",
                                     allow_abbrev=spec["allow_abbrev"])
    for option in spec["options"]:
        kwargs: dict[str, Any] = {"dest": option["dest"], "default": option["default"]}
        if option["kind"] in ("store_true", "store_false"):
            kwargs["action"] = option["kind"]
        else:
            kwargs["type"] = _TYPES[option["type"]]
            if option["nargs"] is not None:
                kwargs["nargs"] = option["nargs"]
            if option["choices"]:
                kwargs["choices"] = option["choices"]
        parser.add_argument(*option["opts"], **kwargs)
    return parser


def _read_flat_yaml(path: str) -> dict[str, Any]:
    """The subset of YAML our roles write for --config: `key: <JSON scalar>` lines."""
    values: dict[str, Any] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, raw = line.partition(":")
            raw = raw.strip()
            try:
                values[key.strip()] = json.loads(raw)
            except ValueError:
                values[key.strip()] = raw
    return values


def merge_config(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """SGLang's --config: file options go first, so the command line wins."""
    if "--config" not in argv:
        return argv
    at = argv.index("--config")
    if at == len(argv) - 1:
        parser.error("No config file specified after --config flag!")
    flags = {a.dest: a for a in parser._actions}
    from_file: list[str] = []
    for key, value in _read_flat_yaml(argv[at + 1]).items():
        action = flags.get(key.replace("-", "_"))
        if action is not None and action.nargs == 0:
            if value:
                from_file.append(f"--{key}")
        elif isinstance(value, list):
            from_file += [f"--{key}", *map(str, value)]
        else:
            from_file += [f"--{key}", str(value)]
    return from_file + argv[:at] + argv[at + 2:]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser(manifest())
    return parser.parse_args(merge_config(argv, parser))
