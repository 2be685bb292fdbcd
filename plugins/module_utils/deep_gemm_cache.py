"""The DeepGEMM JIT compile cache of an SGLang server (issue 16, item 4): which cache a
launch needs, and whether a cache directory is complete.

A cache is good only for the kernels it was compiled for: the SGLang version (its
DeepGEMM), the GPU model, and the shapes the parallel layout and the model give each
rank. key() names that: a directory name derived on the controller from the resolved
launch, so a changed layout, version or GPU model gets a directory of its own and never
reads another's kernels. A cache is complete when it carries the marker of a verified
model-weights copy (module_utils/model_weights.py: the same marker file, the same check
of every file's size), with repo_id DEEPGEMM_REPO and the key as revision; a cache
without it, or with another key's, is never to be used.

Stdlib only: mark_complete() and is_complete() run on the managed host's Python.
"""
from __future__ import annotations

import hashlib
import re

from ansible_collections.kimi_k2.sglang.plugins.module_utils import model_weights

# What the marker names in place of a Hugging Face repository.
DEEPGEMM_REPO = "deepgemm-jit-cache"

# The server flags that decide which kernels DeepGEMM compiles: the model (its weights'
# shapes and quantisation), the parallel layout (how the weights and the batch are split
# over ranks: each rank's GEMM shapes) and the MoE paths (which kernel types). And
# --chunked-prefill-size: the precompile covers every M from 1 to a bound derived from it
# alone (0.5.6.post1 srt/layers/deep_gemm_wrapper/compile_utils.py:41-53). Batch limits
# (--max-running-requests, --cuda-graph-max-bs, --max-prefill-tokens) and the KV cache's
# dtype compile nothing more or less, and addresses, ports, node rank, names, parsers,
# timeouts and keys leave the kernels as they are: a node's own --node-rank or
# --dist-init-addr does not split one layout's cache in two, and a changed batch limit
# does not throw a complete cache away. DeepGEMM names each kernel by its own code and
# flags, so a cache used for another layout is never wrong, only incomplete; the key keeps
# completeness honest.
LAYOUT_FLAGS = (
    "--model-path", "--revision", "--quantization", "--dtype",
    "--tp-size", "--tensor-parallel-size", "--dp-size", "--data-parallel-size",
    "--attn-dp-size", "--ep-size", "--expert-parallel-size", "--pp-size",
    "--pipeline-parallel-size", "--nnodes", "--enable-dp-attention",
    "--moe-a2a-backend", "--moe-runner-backend", "--deepep-mode", "--moe-dense-tp-size",
    "--enable-dp-lm-head", "--chunked-prefill-size", "--speculative-algorithm",
    # A prefill and a decode pool of one parallel layout run different MoE kernels (DeepEP's
    # normal and low-latency paths): a cache each.
    "--disaggregation-mode",
)

# SGLang's precompile entry point per pinned version: the module and the one flag it adds
# to the server's (CompileArgs.timeout, default 3600 s). 0.5.6.post1:
# sglang/compile_deep_gemm.py:39-45 (CompileArgs), :181-191 (main: ServerArgs' flags plus
# --timeout); 0.5.23: :46-52, :233-240. tests/unit/test_deep_gemm_cache.py reads both
# files from the real wheels.
COMPILE_ENTRY_POINTS = {
    "0.5.6.post1": {"module": "sglang.compile_deep_gemm", "timeout_flag": "--timeout"},
    "0.5.23": {"module": "sglang.compile_deep_gemm", "timeout_flag": "--timeout"},
}


def layout_of(argv):
    """The layout flags of a server argv with their values, in the argv's order.

    A flag followed by a value (not another flag) keeps it; a switch stands alone."""
    out = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name not in LAYOUT_FLAGS:
            continue
        if eq:
            out.append("%s=%s" % (name, value))
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out.append("%s=%s" % (name, argv[i + 1]))
        else:
            out.append(name)
    return out


def _slug(text):
    return re.sub(r"[^a-z0-9.]+", "-", str(text).lower()).strip("-")


def _value(layout, *names):
    for item in layout:
        name, _, value = item.partition("=")
        if name in names:
            return value or "1"
    return "1"


def key(argv, sglang_version, gpu_model):
    """The cache's directory name: readable parts (version, GPU, tp/dp/ep/nodes) and a
    digest of every part that decides the kernels. Raises ValueError on an empty part."""
    if not str(sglang_version).strip():
        raise ValueError("the SGLang version is empty")
    if not str(gpu_model).strip():
        raise ValueError("the GPU model is empty")
    layout = layout_of(list(argv))
    digest = hashlib.sha256("\n".join(
        [str(sglang_version), str(gpu_model).strip()] + layout).encode()).hexdigest()[:12]
    return "sglang-%s_%s_tp%s-dp%s-ep%s-n%s_%s" % (
        _slug(sglang_version), _slug(gpu_model),
        _value(layout, "--tp-size", "--tensor-parallel-size"),
        _value(layout, "--dp-size", "--data-parallel-size", "--attn-dp-size"),
        _value(layout, "--ep-size", "--expert-parallel-size"),
        _value(layout, "--nnodes"), digest)


def is_complete(directory, cache_key):
    """(complete, reason): the directory has the marker of this key's cache and every file
    it lists has its size."""
    return model_weights.marker_is_valid(directory, DEEPGEMM_REPO, cache_key)


def mark_complete(directory, cache_key, source, origin=""):
    """Write the marker, last, over the files now in directory (source: "compile" where
    this host built it, "peer" where it was copied from origin)."""
    files = model_weights.local_files(directory)
    manifest = {"repo_id": DEEPGEMM_REPO, "revision": cache_key,
                "files": [{"path": p, "size": s, "sha256": None} for p, s in sorted(files.items())]}
    model_weights.write_marker(directory, manifest, source, sha256_checked=False, origin=origin)
    return manifest


def compile_argv(argv, timeout):
    """The precompile's arguments: the server's, less its --config (the secrets file: the
    entry point parses its flags with a bare argparse, which never reads that file,
    0.5.6.post1 compile_deep_gemm.py:182-186, so the key would not apply anyway), bound
    to 127.0.0.1 (the server it starts is then reachable from this host only: it polls
    and sends its request to --host:--port, :90-123, without a key), plus --timeout."""
    out, i = [], 0
    argv = [str(a) for a in argv]
    while i < len(argv):
        name = argv[i].partition("=")[0]
        if name in ("--config", "--host"):
            i += 1 if "=" in argv[i] else 2
            continue
        out.append(argv[i])
        i += 1
    return out + ["--host", "127.0.0.1", "--timeout", str(int(timeout))]


# systemd stops the precompile this long after its own --timeout: its last request may
# take 600 s more (compile_deep_gemm.py:119-123), then it sleeps 10 s (:170).
STOP_MARGIN = 900


def compile_command(argv, spec):
    """systemd-run's argv for the precompile: a transient unit of the service account, with
    the server's environment file and environment (spec["environment"], SGLANG_DG_CACHE_DIR
    included), waited for (--wait: its exit status; --pipe: its output), stopped by systemd
    STOP_MARGIN seconds after its own timeout."""
    timeout = int(spec["timeout"])
    out = ["systemd-run", "--unit", str(spec["unit"]), "--wait", "--pipe", "--collect", "--quiet",
           "--property", "User=%s" % spec["user"], "--property", "Group=%s" % spec["group"],
           "--property", "EnvironmentFile=%s" % spec["environment_file"],
           "--property", "WorkingDirectory=/var/lib/sglang",
           "--property", "RuntimeMaxSec=%d" % (timeout + STOP_MARGIN)]
    for name, value in sorted(spec["environment"].items()):
        out.append("--setenv=%s=%s" % (name, value))
    return out + [str(spec["python"]), "-m", str(spec["module"])] + compile_argv(argv, timeout)


def plan(members, me):
    """What host `me` does for its cache in this run: {"action", "source", "group", "reason"}.

    members: one dict per host of the run that reported (host, group, rank, nodes, key,
    ready: its cache for key is complete, due: its server (re)starts in this run), in
    inventory order. action is "none" (ready, or not due: a running server keeps what it
    uses), "build" (this host's group compiles, all its ranks at once: SGLang's entry point
    runs on every node of a multi-node layout together) or "copy" (from `source`, the host
    of the same rank in a group of the same key that is ready or builds now). Per key, the
    first group (inventory order) that has a due rank with no ready source builds; every
    other group copies, rank for rank. A build group must be whole in the run."""
    by_host = {m["host"]: m for m in members}
    mine = by_host[me]
    same = [m for m in members if m["key"] == mine["key"]]

    def ready_source(rank):
        return next((m["host"] for m in same if m["ready"] and m["rank"] == rank), "")

    groups = []
    for m in same:
        if m["due"] and not m["ready"] and not ready_source(m["rank"]) and m["group"] not in groups:
            groups.append(m["group"])
    builder = groups[0] if groups else ""
    result = {"action": "none", "source": "", "group": builder, "key": mine["key"], "reason": ""}
    if not mine["due"]:
        result["reason"] = "the server is not (re)started in this run"
        return result
    if mine["group"] == builder:
        present = sorted(m["rank"] for m in same if m["group"] == builder)
        if present != list(range(mine["nodes"])):
            missing = sorted(set(range(mine["nodes"])) - set(present))
            result.update(action="fail", reason=(
                "%s must compile its DeepGEMM cache %s on all its %d nodes at once, but "
                "rank(s) %s are not in this run: run serve.yml on the whole group"
                % (builder, mine["key"], mine["nodes"], ", ".join(map(str, missing)))))
            return result
        result.update(action="build", reason="no complete cache of this layout in this run")
        return result
    if mine["ready"]:
        result["reason"] = "complete"
        return result
    source = ready_source(mine["rank"]) or next(
        (m["host"] for m in same if m["group"] == builder and m["rank"] == mine["rank"]), "")
    if source:
        result.update(action="copy", source=source, reason="copied from %s" % source)
    else:
        result.update(action="fail", reason=(
            "no host of this layout's cache %s holds rank %s's copy, and no group of it can "
            "build one in this run" % (mine["key"], mine["rank"])))
    return result


def copies(plans):
    """The distinct sources of this run's copies, each with the key it serves."""
    seen, out = set(), []
    for entry in plans:
        if entry and entry.get("action") == "copy" and (entry["source"], entry["key"]) not in seen:
            seen.add((entry["source"], entry["key"]))
            out.append({"source": entry["source"], "key": entry["key"]})
    return out
