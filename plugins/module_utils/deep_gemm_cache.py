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

# The server flags that decide the shapes DeepGEMM compiles kernels for: the model (its
# weights' shapes and quantisation), the parallel layout (how the weights and the batch
# are split over ranks), the MoE paths and the batch sizes. Everything else (addresses,
# ports, node rank, names, parsers, timeouts, keys) leaves the kernels as they are, so a
# node's own --node-rank or --dist-init-addr does not split one layout's cache in two.
LAYOUT_FLAGS = (
    "--model-path", "--revision", "--quantization", "--dtype", "--kv-cache-dtype",
    "--tp-size", "--tensor-parallel-size", "--dp-size", "--data-parallel-size",
    "--attn-dp-size", "--ep-size", "--expert-parallel-size", "--pp-size",
    "--pipeline-parallel-size", "--nnodes", "--enable-dp-attention",
    "--moe-a2a-backend", "--moe-runner-backend", "--deepep-mode", "--moe-dense-tp-size",
    "--enable-dp-lm-head", "--chunked-prefill-size", "--max-running-requests",
    "--max-prefill-tokens", "--cuda-graph-max-bs", "--speculative-algorithm",
)


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
