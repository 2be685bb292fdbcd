"""What differs between the SGLang versions the toolkit speaks, read from data.

Each version has two committed files in manifests/sglang/: `<version>.json`, every flag of
its real parser (tools/gen_sglang_manifest.py), and `<version>.rules.json`, what the
parser alone does not say: the entry point, the endpoints, how attention data
parallelism is spelled, replacements of retired flags, and the Kimi-K2 facts that changed
(each with the file:line of that version's code). A new version is those two files plus
tests; the code below reads whatever the data says.

Runs on the controller only (the launch builder and tests import it). Stdlib only.

For other code that adds a flag only where the pinned version has it:

    if sglang_versions.has_flag(version, "--some-flag"):
        argv += ["--some-flag", value]
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "manifests" / "sglang"

# Manifest kinds that take no value on the command line.
VALUELESS_KINDS = ("store_true", "store_false", "boolean_optional", "deprecated_store_true",
                   "deprecated")


class UnknownVersion(ValueError):
    """No manifest or no rules for the version asked for."""


def known_versions() -> list[str]:
    return sorted((p.name[:-len(".rules.json")] for p in MANIFEST_DIR.glob("*.rules.json")),
                  key=_release_key)


def _release_key(version: str) -> tuple:
    """0.5.6.post1 before 0.5.23: numeric parts compared as numbers."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in version.split("."))


def _read(version: str, suffix: str) -> dict[str, Any]:
    path = MANIFEST_DIR / f"{version}{suffix}"
    if not path.is_file():
        raise UnknownVersion(
            f"no {path.name} for SGLang {version} (sglang_version); known: {known_versions()}. "
            f"A new version needs manifests/sglang/{version}.json (make manifest "
            f"SGLANG_VERSION={version}) and {version}.rules.json")
    return json.loads(path.read_text())


@lru_cache(maxsize=None)
def manifest(version: str) -> dict[str, Any]:
    return _read(version, ".json")


@lru_cache(maxsize=None)
def rules(version: str) -> dict[str, Any]:
    return _read(version, ".rules.json")


@lru_cache(maxsize=None)
def options(version: str) -> dict[str, dict[str, Any]]:
    """flag -> its manifest entry, every spelling of every option."""
    return {opt: o for o in manifest(version)["options"] for opt in o["opts"]}


def has_flag(version: str, flag: str) -> bool:
    """Whether the pinned version's parser declares this flag (full name)."""
    return flag in options(version)


def takes_value(option: dict[str, Any]) -> bool:
    if option["kind"] == "deprecated_store_const":
        return option["nargs"] != 0  # nargs None: a retired valued flag (--monokernel-backend amd)
    return option["kind"] not in VALUELESS_KINDS


def entry_point(version: str) -> list[str]:
    """What follows the venv's `python` in the unit: `-m <module>`."""
    return list(rules(version)["entry_point"]["unit"])


def endpoints(version: str) -> dict[str, Any]:
    return dict(rules(version)["endpoints"])


def attention_dp_argv(version: str, dp: int,
                      dp_attention: bool) -> tuple[list[str], list[str]]:
    """The flags for `dp` data-parallel ways, with or without attention DP, as (sizes,
    switches): the builder writes switches after the other sizes (--ep-size).

    Without attention DP, `--dp-size N` is N model replicas in every version. With it,
    0.5.6.post1 spells N attention-DP groups `--dp-size N --enable-dp-attention`; 0.5.23
    deprecates that spelling for `--attn-dp-size N` (see its rules file: "attention_dp").
    """
    if dp <= 1 and not dp_attention:
        return [], []
    if not dp_attention:
        return ["--dp-size", str(dp)], []
    style = rules(version)["attention_dp"]
    if style == "dp_size_and_flag":
        return ["--dp-size", str(dp)], ["--enable-dp-attention"]
    if style == "attn_dp_size":
        return ["--attn-dp-size", str(dp)], []
    raise UnknownVersion(f"{version}.rules.json: unknown attention_dp style {style!r}")


def instruct_reasoning_parser_empties_content(version: str) -> bool:
    return bool(rules(version)["kimi"]["instruct_reasoning_parser_empties_content"])


def _replacement(version: str, flag: str, default: str) -> str:
    replaced = rules(version)["replaced_flags"].get(flag)
    if replaced:
        return f"use {replaced['use']} ({replaced['why']})"
    return default


def retired_flag_problems(version: str, tokens: list[Any], variable: str) -> list[str]:
    """Flags in `tokens` that the pinned version deprecates, no longer has, or would read
    as something else: each refused with its replacement, before any host is touched."""
    out = []
    own = options(version)
    others = {v: options(v) for v in known_versions() if v != version}
    for token in tokens:
        token = str(token)
        if not token.startswith("--"):
            continue
        flag = token.partition("=")[0]
        option = own.get(flag)
        if option is not None:
            deprecated = option.get("deprecated")
            if deprecated is not None:
                new = deprecated.get("new_flag") or deprecated.get("error_message")
                out.append(f"{variable} sets {flag}, deprecated in SGLang {version}: "
                           + _replacement(version, flag, f"use {new}"))
            continue
        had = sorted(v for v, opts in others.items() if flag in opts)
        if not had:
            continue  # not a flag of any known version: the manifest check names it
        prefixes = sorted(o for o in own if o.startswith(flag))
        if len(prefixes) > 1:
            how = (f"SGLang {version}'s parser refuses it as an ambiguous option "
                   f"(--{flag[2:]} could match {', '.join(prefixes)})")
        elif prefixes:
            how = (f"SGLang {version}'s parser would silently read it as {prefixes[0]}, "
                   "another option")
        else:
            how = f"SGLang {version} has no such flag"
        out.append(f"{variable} sets {flag}, a flag of SGLang {', '.join(had)} but not of "
                   f"{version} ({how}): "
                   + _replacement(version, flag, f"remove it; {version} has no replacement"))
    return out
