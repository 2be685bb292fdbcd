"""Turn a Kimi-K2 deployment (inventory variables) into SGLang's launch argv.

Pure functions, no I/O beyond reading the committed flag manifest of the pinned SGLang
version (manifests/sglang/<version>.json, written by tools/gen_sglang_manifest.py from
SGLang's real argument parser). The rules below are the ones the 0.5.6.post1 server
enforces (or silently gets wrong); each error names the inventory variable to change.

Filters:
  sglang_launch_problems(deployment) -> list of error strings (empty when launchable)
  sglang_launch_argv(deployment)     -> argv after `python -m <module>`
  sglang_launch(deployment)          -> {problems, argv, resolved} in one evaluation
  sglang_systemd_lines(argv)         -> ExecStart continuation lines, one flag per line
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_versions
from ansible_collections.kimi_k2.sglang.plugins.module_utils.argv_check import read_argv

from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_bringup
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_disaggregation

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "manifests" / "sglang"

GIB = 1024 ** 3


@dataclass(frozen=True)
class Variant:
    repo: str
    weight_bytes: int        # safetensors total, from the Hub file list
    max_context: int
    reasoning_parser: str | None
    tool_call_parser: str | None


# Facts from ../shared/reference/SGLANG.md. Instruct must NOT get a reasoning parser:
# in 0.5.6.post1 it moves every answer into reasoning_content and leaves content empty.
VARIANTS: dict[str, Variant] = {
    "instruct": Variant("moonshotai/Kimi-K2-Instruct", int(958.5 * GIB), 131072,
                        None, "kimi_k2"),
    "instruct-0905": Variant("moonshotai/Kimi-K2-Instruct-0905", int(958.5 * GIB), 262144,
                             None, "kimi_k2"),
    "thinking": Variant("moonshotai/Kimi-K2-Thinking", 554 * 10 ** 9, 262144,
                        "kimi_k2", "kimi_k2"),
}

# Memory per GPU as nvidia-smi reports it (MiB).
GPU_MEMORY_MIB: dict[str, int] = {
    "H200": 143771,
    "H100": 81559,
    "H20": 97871,
    "B200": 183359,
}

# Share of a GPU's memory the weights may take at most: the rest holds the CUDA context,
# activations, CUDA graphs and a KV cache big enough to serve at all.
WEIGHT_CEILING = 0.93

# Kimi-K2 MoE: moe_intermediate_size 2048 with FP8 blocks of 128 (SGLANG.md).
MOE_INTERMEDIATE = 2048
MOE_BLOCK = 128

# Published deployments (SGLang's Kimi-K2 cookbook): name -> (tp, dp, ep, dp-attention).
PROFILES: dict[str, tuple[int, int, int, bool]] = {
    "tp8": (8, 1, 1, False),
    "latency": (8, 4, 1, True),
    "throughput": (8, 4, 4, True),
}

# Flags the builder owns: extra args may not set them (one way to set a thing).
_OWNED = {
    "--model-path": "sglang_service_model_path",
    "--served-model-name": "sglang_service_served_model_name",
    "--tp-size": "sglang_service_tp_size",
    "--dp-size": "sglang_service_dp_size",
    "--ep-size": "sglang_service_ep_size",
    "--enable-dp-attention": "sglang_service_dp_attention_enabled",
    "--attn-dp-size": "sglang_service_dp_size with sglang_service_dp_attention_enabled",
    "--nnodes": "sglang_service_deployment_group",
    "--node-rank": "sglang_service_deployment_group",
    "--dist-init-addr": "sglang_service_dist_init_port",
    "--trust-remote-code": "(always set for Kimi-K2)",
    "--reasoning-parser": "sglang_service_reasoning_parser",
    "--tool-call-parser": "sglang_service_tool_call_parser",
    "--context-length": "sglang_service_context_length",
    "--kv-cache-dtype": "sglang_service_kv_cache_dtype",
    "--mem-fraction-static": "sglang_service_mem_fraction_static",
    "--chunked-prefill-size": "sglang_service_chunked_prefill_size",
    "--max-running-requests": "sglang_service_max_running_requests",
    "--host": "sglang_service_host",
    "--port": "sglang_service_port",
    "--enable-metrics": "sglang_service_metrics_enabled",
    "--enable-metrics-for-all-schedulers": "sglang_service_metrics_enabled (with dp-attention)",
    "--api-key": "sglang_service_api_key (kept out of argv, in the 0600 secrets file)",
    "--config": "(the role passes the secrets file with --config)",
}

ALL_SCHEDULERS = "--enable-metrics-for-all-schedulers"

# Never valid for Kimi-K2: FP8 / compressed-tensors come from config.json.
_FORBIDDEN = {"--quantization": "Kimi-K2 reads its quantization from config.json"}


# ---------------------------------------------------------------- manifest


@lru_cache(maxsize=None)
def load_manifest(version: str) -> dict[str, Any]:
    path = MANIFEST_DIR / f"{version}.json"
    if not path.is_file():
        known = sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))
        raise AnsibleFilterError(
            f"no flag manifest for SGLang {version} (sglang_version); known: {known}. "
            f"Generate one with: make manifest SGLANG_VERSION={version}")
    return json.loads(path.read_text())


def _options(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {opt: o for o in manifest["options"] for opt in o["opts"]}


def argv_problems(argv: list[str], version: str) -> list[str]:
    """Check argv against the manifest like SGLang's parser would, but stricter:
    abbreviations (argparse prefixes such as --tp) must be written out in full."""
    options = _options(load_manifest(version))
    return read_argv(argv, options, f"a flag of SGLang {version}",
                     sglang_versions.takes_value)[1]


# ---------------------------------------------------------------- deployment


@dataclass(frozen=True)
class Layout:
    tp: int
    dp: int
    ep: int
    dp_attention: bool


def _layout(d: dict[str, Any]) -> Layout:
    tp, dp, ep, dpa = PROFILES[d["profile"]]
    pick = (lambda key, base: base if d.get(key) is None else d[key])
    return Layout(int(pick("tp_size", tp)), int(pick("dp_size", dp)),
                  int(pick("ep_size", ep)), bool(pick("dp_attention_enabled", dpa)))


def _parser(d: dict[str, Any], key: str, default: str | None) -> str | None:
    value = d.get(key, "auto")
    if value in (None, "auto"):
        return default
    return None if value == "none" else value


def resolve(d: dict[str, Any]) -> dict[str, Any]:
    """Apply the profile and the variant's defaults; no validation."""
    variant = VARIANTS[d["variant"]]
    layout = _layout(d)
    return {
        **d,
        "tp_size": layout.tp, "dp_size": layout.dp, "ep_size": layout.ep,
        "dp_attention_enabled": layout.dp_attention,
        "model_path": d.get("model_path") or variant.repo,
        "served_model_name": d.get("served_model_name") or variant.repo,
        "reasoning_parser": _parser(d, "reasoning_parser", variant.reasoning_parser),
        "tool_call_parser": _parser(d, "tool_call_parser", variant.tool_call_parser),
        "nnodes": int(d.get("nnodes") or 1),
        "node_rank": int(d.get("node_rank") or 0),
    }


def _smallest_fitting_tp(weight_bytes: int, budget: float, gpus_per_node: int) -> int | None:
    for nodes in range(1, 9):
        tp = nodes * gpus_per_node
        if weight_bytes / tp <= budget:
            return tp
    return None


def _layout_problems(r: dict[str, Any]) -> list[str]:
    tp, dp, ep, nnodes = r["tp_size"], r["dp_size"], r["ep_size"], r["nnodes"]
    gpus = int(r["gpus_per_node"])
    out = []
    for key in ("tp_size", "dp_size", "ep_size"):
        if r[key] < 1:
            out.append(f"sglang_service_{key} must be >= 1, got {r[key]}")
    if out:
        return out
    if tp % nnodes:
        out.append(f"tp {tp} does not split over {nnodes} nodes: set sglang_service_tp_size "
                   f"to a multiple of {nnodes} (e.g. {nnodes * gpus})")
    elif tp // nnodes > gpus:
        out.append(f"tp {tp} over {nnodes} node(s) needs {tp // nnodes} GPUs per node but "
                   f"sglang_service_gpus_per_node is {gpus}: lower sglang_service_tp_size "
                   f"or add nodes to the deployment group")
    if r["dp_attention_enabled"]:
        if tp % dp:
            out.append(f"with dp-attention tp {tp} must be a multiple of dp {dp}: "
                       f"change sglang_service_dp_size")
        if dp == 1:
            out.append("dp-attention with dp 1 is silently disabled by SGLang: set "
                       "sglang_service_dp_size > 1 or sglang_service_dp_attention_enabled: false")
    elif dp > 1 and nnodes > 1:
        out.append(f"dp {dp} over {nnodes} nodes requires dp-attention: set "
                   "sglang_service_dp_attention_enabled: true")
    if tp % ep:
        out.append(f"tp {tp} must be a multiple of ep {ep}: change sglang_service_ep_size")
    else:
        shard = MOE_INTERMEDIATE / (tp // ep)
        if shard % MOE_BLOCK:
            need = next((e for e in range(ep, tp + 1) if tp % e == 0
                         and (MOE_INTERMEDIATE / (tp // e)) % MOE_BLOCK == 0), tp)
            out.append(f"tp {tp} / ep {ep} splits each Kimi-K2 expert into {shard:g}-wide "
                       f"shards, not a multiple of the FP8 block {MOE_BLOCK}: set "
                       f"sglang_service_ep_size to at least {need}")
    return out


def _fit_problems(r: dict[str, Any]) -> list[str]:
    gpu = r["gpu_model"]
    if gpu not in GPU_MEMORY_MIB:
        return [f"sglang_service_gpu_model {gpu!r} is unknown; known: {sorted(GPU_MEMORY_MIB)}"]
    variant = VARIANTS[r["variant"]]
    fraction = float(r.get("mem_fraction_static") or WEIGHT_CEILING)
    budget = GPU_MEMORY_MIB[gpu] * 1024 ** 2 * min(fraction, WEIGHT_CEILING)
    per_gpu = variant.weight_bytes / r["tp_size"]
    if per_gpu <= budget:
        return []
    smallest = _smallest_fitting_tp(variant.weight_bytes, budget, int(r["gpus_per_node"]))
    fix = ("no layout of up to 8 nodes fits" if smallest is None else
           f"the smallest layout that loads is sglang_service_tp_size: {smallest} over "
           f"{smallest // int(r['gpus_per_node'])} node(s) (sglang_service_deployment_group)")
    return [f"{variant.repo} does not fit: {per_gpu / GIB:.1f} GiB of weights per GPU at "
            f"tp {r['tp_size']}, but a {gpu} holds {budget / GIB:.1f} GiB for weights "
            f"({fraction:g} of {GPU_MEMORY_MIB[gpu] / 1024:.1f} GiB); {fix}"]


def _parser_problems(r: dict[str, Any]) -> list[str]:
    out = []
    variant = r["variant"]
    reasoning, tools = r["reasoning_parser"], r["tool_call_parser"]
    if (variant.startswith("instruct") and reasoning
            and sglang_versions.instruct_reasoning_parser_empties_content(r["sglang_version"])):
        out.append(f"sglang_service_reasoning_parser {reasoning!r} on the {variant} variant "
                   "moves every answer into reasoning_content and leaves content empty: "
                   "set it to 'auto' or 'none'")
    if variant == "thinking" and reasoning not in (None, "kimi_k2"):
        out.append(f"sglang_service_reasoning_parser {reasoning!r} does not parse Kimi-K2 "
                   "thinking output: set it to 'auto' (kimi_k2)")
    if variant == "thinking" and reasoning is None:
        out.append("the thinking variant without a reasoning parser returns its reasoning "
                   "inside content: set sglang_service_reasoning_parser to 'auto'")
    if tools not in (None, "kimi_k2"):
        out.append(f"sglang_service_tool_call_parser {tools!r} does not parse Kimi-K2 tool "
                   "calls: set it to 'auto' (kimi_k2) or 'none'")
    return out


def _extra_arg_problems(r: dict[str, Any]) -> list[str]:
    out = []
    extra = list(r.get("extra_args") or [])
    for token in extra:
        flag = token.partition("=")[0]
        if flag in _OWNED:
            out.append(f"sglang_service_extra_args sets {flag}: use {_OWNED[flag]} instead")
        if flag in sglang_bringup.OWNED:
            out.append(f"sglang_service_extra_args sets {flag}: use {sglang_bringup.OWNED[flag]} instead")
        if flag in _FORBIDDEN:
            out.append(f"sglang_service_extra_args sets {flag}: {_FORBIDDEN[flag]}; remove it")
    out += sglang_versions.retired_flag_problems(r["sglang_version"], extra,
                                                 "sglang_service_extra_args")
    return out


def _scalar_problems(r: dict[str, Any]) -> list[str]:
    out = []
    if ":" in r["served_model_name"]:
        out.append(f"sglang_service_served_model_name {r['served_model_name']!r} contains ':', "
                   "which SGLang reserves: choose a name without it")
    ctx = r.get("context_length")
    limit = VARIANTS[r["variant"]].max_context
    if ctx is not None and not 0 < int(ctx) <= limit:
        out.append(f"sglang_service_context_length {ctx} is outside 1..{limit} for the "
                   f"{r['variant']} variant")
    if not 0 < int(r["port"]) < 65536:
        out.append(f"sglang_service_port {r['port']} is not a TCP port")
    if r["nnodes"] > 1 and not r.get("dist_init_addr"):
        out.append("a multi-node deployment needs the first node's address: set "
                   "sglang_service_cluster_address on it")
    if not 0 <= r["node_rank"] < r["nnodes"]:
        out.append(f"node rank {r['node_rank']} is outside 0..{r['nnodes'] - 1}")
    return out


def sglang_launch_problems(deployment: dict[str, Any]) -> list[str]:
    """Every reason this deployment cannot start, each naming what to change."""
    if deployment.get("variant") not in VARIANTS:
        return [f"sglang_service_variant {deployment.get('variant')!r} is not one of "
                f"{sorted(VARIANTS)}"]
    if deployment.get("profile") not in PROFILES:
        return [f"sglang_service_profile {deployment.get('profile')!r} is not one of "
                f"{sorted(PROFILES)}"]
    load_manifest(deployment.get("sglang_version"))
    try:
        sglang_versions.rules(deployment.get("sglang_version"))
    except sglang_versions.UnknownVersion as error:
        raise AnsibleFilterError(str(error)) from error
    r = resolve(deployment)
    if min(r["tp_size"], r["dp_size"], r["ep_size"]) < 1:
        return _layout_problems(r)
    problems = (_layout_problems(r) + _fit_problems(r) + _parser_problems(r)
                + _extra_arg_problems(r) + _scalar_problems(r))
    # Issue 17: prefill/decode disaggregation, DeepEP and EPLB (extra args included).
    problems += sglang_disaggregation.problems(r, _options(load_manifest(r["sglang_version"])),
                                               r["sglang_version"])
    if not problems:
        problems = argv_problems(_render(r), r["sglang_version"])
    return problems


def _render(r: dict[str, Any]) -> list[str]:
    argv = ["--model-path", r["model_path"],
            "--served-model-name", r["served_model_name"],
            "--tp-size", str(r["tp_size"])]
    # Spelled per version (manifests/sglang/<version>.rules.json, "attention_dp").
    sizes, switches = sglang_versions.attention_dp_argv(r["sglang_version"], r["dp_size"],
                                                        r["dp_attention_enabled"])
    argv += sizes
    if r["ep_size"] > 1:
        argv += ["--ep-size", str(r["ep_size"])]
    argv += switches
    if r["nnodes"] > 1:
        argv += ["--nnodes", str(r["nnodes"]), "--node-rank", str(r["node_rank"]),
                 "--dist-init-addr", r["dist_init_addr"]]
    argv.append("--trust-remote-code")
    for key, flag in (("reasoning_parser", "--reasoning-parser"),
                      ("tool_call_parser", "--tool-call-parser"),
                      ("context_length", "--context-length"),
                      ("mem_fraction_static", "--mem-fraction-static"),
                      ("chunked_prefill_size", "--chunked-prefill-size"),
                      ("max_running_requests", "--max-running-requests")):
        if r.get(key) is not None:
            argv += [flag, str(r[key])]
    if r.get("kv_cache_dtype", "auto") != "auto":
        argv += ["--kv-cache-dtype", r["kv_cache_dtype"]]
    argv += ["--host", str(r["host"]), "--port", str(r["port"])]
    if r.get("metrics_enabled"):
        argv.append("--enable-metrics")
        # With dp-attention only attention-TP rank 0's schedulers report unless told (all
        # metrics seem to come from one scheduler); a version without the flag goes without.
        if r["dp_attention_enabled"] and ALL_SCHEDULERS in _options(load_manifest(r["sglang_version"])):
            argv.append(ALL_SCHEDULERS)
    if r.get("secrets_file"):
        argv += ["--config", r["secrets_file"]]
    # Issue 16's timeouts, crash dumps and loader: only the flags the pinned version has.
    argv += sglang_bringup.bringup_argv(r, _options(load_manifest(r["sglang_version"])))
    # Issue 17: prefill/decode disaggregation, DeepEP and EPLB.
    argv += sglang_disaggregation.disaggregation_argv(r, _options(load_manifest(r["sglang_version"])))
    return argv + [str(a) for a in r.get("extra_args") or []]


def sglang_launch_argv(deployment: dict[str, Any]) -> list[str]:
    problems = sglang_launch_problems(deployment)
    if problems:
        raise AnsibleFilterError("cannot build the SGLang command: " + "; ".join(problems))
    return _render(resolve(deployment))


# ---------------------------------------------------------------- systemd

_SAFE = re.compile(r"^[A-Za-z0-9_./:=@+,%$-]+$")


def systemd_quote(arg: str) -> str:
    """Quote one argument for ExecStart: systemd expands % specifiers and $VARS."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _SAFE.match(escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sglang_systemd_lines(argv: list[str]) -> list[str]:
    """Group argv into one line per flag (the flag with its values)."""
    lines: list[list[str]] = []
    for arg in argv:
        if arg.startswith("--") or not lines:
            lines.append([])
        lines[-1].append(systemd_quote(arg))
    return [" ".join(words) for words in lines]


def sglang_launch(deployment: dict[str, Any]) -> dict[str, Any]:
    """Everything the role reads about one host's launch, from one evaluation: the role
    stores it as a fact, because Jinja vars are re-evaluated at every reference.

    problems: as sglang_launch_problems. argv: as sglang_launch_argv, empty when there are
    problems. resolved: the deployment with the profile and variant defaults applied (what
    verify expects); with problems, the deployment as given, so that its rank and node
    count still describe the host (status.yml reads them from any host).
    """
    try:
        problems = sglang_launch_problems(deployment)
    except AnsibleFilterError as error:  # no manifest for the version: a problem like others
        problems = [str(error)]
    if problems:
        return {"problems": problems, "argv": [],
                "resolved": {**deployment, "nnodes": int(deployment.get("nnodes") or 1),
                             "node_rank": int(deployment.get("node_rank") or 0)}}
    resolved = resolve(deployment)
    return {"problems": [], "argv": _render(resolved), "resolved": resolved}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "sglang_launch": sglang_launch,
            "sglang_launch_problems": sglang_launch_problems,
            "sglang_launch_argv": sglang_launch_argv,
            "sglang_systemd_lines": sglang_systemd_lines,
        }
