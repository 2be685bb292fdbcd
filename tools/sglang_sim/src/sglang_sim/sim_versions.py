"""Which SGLang version the simulator imitates, and that version's data.

versions/<version>.json and <version>.rules.json are copies of the toolkit's committed
manifests/sglang/ files (tests/unit/test_simulator_versions.py keeps them equal): the real
parser's flags, and the rules the parser alone does not say (endpoints, how attention
data parallelism is spelled, how each reasoning parser treats Kimi-K2's output).

The role installs the simulator the same way for every version; SGLANG_SIM_VERSION in the
unit's environment (the demo sets it to sglang_version) says which one to be. Unset, it
is 0.5.6.post1, the version of SGLang's published Kimi-K2 figures.
"""
from __future__ import annotations

import argparse
import json
import os
from functools import lru_cache
from importlib import resources
from typing import Any

DEFAULT_VERSION = "0.5.6.post1"


def known() -> list[str]:
    names = [p.name for p in resources.files(__package__).joinpath("versions").iterdir()]
    return sorted(n[:-len(".rules.json")] for n in names if n.endswith(".rules.json"))


def current() -> str:
    """The version asked for; an unknown one stops the simulator (exit 1), naming the known."""
    version = os.environ.get("SGLANG_SIM_VERSION") or DEFAULT_VERSION
    if version not in known():
        raise SystemExit(f"sglang_sim: SGLANG_SIM_VERSION {version!r} is not one of {known()}")
    return version


@lru_cache(maxsize=None)
def _load(name: str) -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("versions", name).read_text())


def manifest(version: str) -> dict[str, Any]:
    return _load(f"{version}.json")


def rules(version: str) -> dict[str, Any]:
    return _load(f"{version}.rules.json")


def normalize(args: argparse.Namespace, version: str) -> list[str]:
    """Resolve the version's retired spellings, then give the parallel layout the names the
    rest of the simulator reads (0.5.6.post1's dests). Returns the errors SGLang would
    raise for the layout at start.

    0.5.23 (sglang/srt/arg_groups/parallel_hook.py:39-61): `--dp-size N
    --enable-dp-attention` becomes attn_dp_size N, dp_size 1; attention DP is on when
    attn_dp_size > 1; replicas together with attention DP are refused (:287-292)."""
    if rules(version)["attention_dp"] != "attn_dp_size":
        return []
    if args.enable_dp_attention and args.attn_dp_size == 1:
        args.attn_dp_size, args.dp_size = args.dp_size, 1
    errors = []
    if args.attn_dp_size > 1 and args.dp_size > 1:
        errors.append(f"--dp-size {args.dp_size} with --attn-dp-size {args.attn_dp_size}: "
                      "data-parallel replicas combined with attention data parallelism "
                      "are not supported.")
    args.enable_dp_attention = args.attn_dp_size > 1
    args.tensor_parallel_size, args.expert_parallel_size = args.tp_size, args.ep_size
    args.pipeline_parallel_size = args.pp_size
    args.data_parallel_size = args.attn_dp_size if args.enable_dp_attention else args.dp_size
    return errors
