"""Parse argv exactly as the imitated SGLang version's parser does, from its manifest."""
from __future__ import annotations

import argparse
import json
from typing import Any

from . import sim_versions
from .log import log

# argparse type names in the manifest -> callables.
_TYPES = {"int": int, "float": float, "str": str, "json": json.loads}


def manifest(version: str | None = None) -> dict[str, Any]:
    return sim_versions.manifest(version or sim_versions.current())


class _Deprecated(argparse.Action):
    """SGLang 0.5.23's retired-flag actions (srt/arg_groups/argparse_actions.py): a
    warning in the words SGLang logs, then what the old flag stored; or, with an
    error_message, the launch stops (exit 2)."""

    def __init__(self, option_strings, dest, deprecated=None, store=None, **kwargs):
        self.deprecated, self.store = deprecated or {}, store
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if self.store == "error":
            if self.deprecated.get("error_message"):
                parser.error(self.deprecated["error_message"])
            log(f"The command line argument '{option_string}' is deprecated and will be "
                "removed in future versions.", "warning")
            return
        new = self.deprecated.get("new_flag")
        # In SGLang's yellow (print_deprecated_warning), escape codes and all.
        log(f"\033[1;33m'{option_string}' is deprecated and will be removed in a future "
            "release." + (f" Use '{new}' instead." if new else "") + "\033[0m", "warning")
        value = {"true": True, "const": self.deprecated.get("const_value")}.get(self.store,
                                                                                values)
        setattr(namespace, self.dest, value)


_DEPRECATED_STORE = {"deprecated_store_true": "true", "deprecated_store_const": "const",
                     "deprecated_alias": "values", "deprecated": "error"}


def build_parser(spec: dict[str, Any]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sglang_sim.launch_server",
                                     allow_abbrev=spec["allow_abbrev"])
    for option in spec["options"]:
        kwargs: dict[str, Any] = {"dest": option["dest"], "default": option["default"]}
        opts = option["opts"]
        if option["kind"] in ("store_true", "store_false"):
            kwargs["action"] = option["kind"]
        elif option["kind"] == "boolean_optional":  # argparse adds the --no- spelling
            kwargs["action"] = argparse.BooleanOptionalAction
            opts = [o for o in opts if not o.startswith("--no-")]
        elif option["kind"] in _DEPRECATED_STORE:
            kwargs.update(action=_Deprecated, deprecated=option.get("deprecated"),
                          store=_DEPRECATED_STORE[option["kind"]], nargs=option["nargs"])
            if option["choices"]:
                kwargs["choices"] = option["choices"]
        else:
            kwargs["type"] = _TYPES[option["type"]]
            if option["nargs"] is not None:
                kwargs["nargs"] = option["nargs"]
            if option["choices"]:
                kwargs["choices"] = option["choices"]
        parser.add_argument(*opts, **kwargs)
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


def parse(argv: list[str], version: str | None = None) -> argparse.Namespace:
    parser = build_parser(manifest(version))
    return parser.parse_args(merge_config(argv, parser))
