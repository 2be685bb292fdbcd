"""`python -m sglang_sim.compile_deep_gemm <SGLang argv> [--timeout S]`: a test double of
SGLang's DeepGEMM precompile entry point (`python -m sglang.compile_deep_gemm`), not SGLang.

The real module (0.5.6.post1 `sglang/compile_deep_gemm.py:181-191`, 0.5.23 `:232-240`)
takes the server's own arguments plus `--timeout` (default 3600, `:41-45` / `:48-52`),
starts the server with the warm-up "compile-deep-gemm", which fills SGLANG_DG_CACHE_DIR,
sends one request and stops; past the timeout it raises "DeepGEMM Kernels compilation
timeout." (`:139-142` / `:177-180`). On a multi-node layout every node runs it with its
own --node-rank, as the server: the ranks other than 0 wait for node 0's server to end.

This double checks the argv against the pinned version's manifest as the simulated
server does (unknown flag: exit 2; a cross-flag rule broken: exit 1), spends
SGLANG_SIM_DG_COMPILE_SECONDS (default 0) "compiling", and writes into SGLANG_DG_CACHE_DIR
a few small files whose names and contents derive from the version and the parallel
layout, so a cache built for one layout is told apart from another's. It does not wait
for the other nodes. Like the real one, which starts a server on the server's --host and
--port (`:76-90`), it holds that address while it compiles: beside a running server it
fails at once ("address already in use"; the real one would poll the running server
instead). SGLANG_SIM_DG_COMPILE_CRASH=1 is a fault: the server it starts dies, which the
real entry point reports only at its timeout, with the timeout's message; the double
reports it at once.
"""
from __future__ import annotations

import hashlib
import os
import socket
import sys
import time

from . import __version__, cli, rules, sim_versions

DEFAULT_TIMEOUT = 3600  # CompileArgs.timeout in both pinned versions
# Kernel families DeepGEMM compiles for an FP8 MoE model (names as DeepGEMM's JIT gives them).
KERNELS = ("gemm_fp8_fp8_bf16_nt", "m_grouped_gemm_fp8_fp8_bf16_nt_contiguous",
           "m_grouped_gemm_fp8_fp8_bf16_nt_masked")


def split_timeout(argv: list[str]) -> tuple[list[str], int]:
    """The server's argv, and CompileArgs' --timeout taken out of it."""
    rest, timeout, i = [], DEFAULT_TIMEOUT, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--timeout" and i + 1 < len(argv):
            timeout, i = int(argv[i + 1]), i + 2
            continue
        if arg.startswith("--timeout="):
            timeout = int(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    return rest, timeout


def layout_of(args) -> str:
    """What the compiled kernels depend on, as the double sees it: the parallel layout."""
    return ("tp=%s dp=%s ep=%s nnodes=%s dp_attention=%s moe_a2a=%s" % (
        args.tensor_parallel_size, args.data_parallel_size, args.expert_parallel_size,
        args.nnodes, bool(getattr(args, "enable_dp_attention", False)),
        getattr(args, "moe_a2a_backend", None)))


def write_cache(directory: str, version: str, layout: str) -> list[str]:
    digest = hashlib.sha256(("%s|%s" % (version, layout)).encode()).hexdigest()
    written = []
    for number, kernel in enumerate(KERNELS):
        rel = os.path.join("cache", "kernel.%s.%s" % (kernel, digest[number * 8:number * 8 + 16]))
        os.makedirs(os.path.join(directory, rel), exist_ok=True)
        path = os.path.join(directory, rel, "kernel.cubin")
        with open(path, "w") as f:
            f.write("sglang_sim %s: not a kernel; SGLang %s, %s\n" % (__version__, version, layout))
        written.append(os.path.join(rel, "kernel.cubin"))
    return written


def main(argv: list[str] | None = None) -> int:
    version = sim_versions.current()
    server_argv, timeout = split_timeout(sys.argv[1:] if argv is None else argv)
    args = cli.parse(server_argv, version)  # unknown flag: exit 2
    errors = sim_versions.normalize(args, version) + rules.check(args)
    if errors:
        for error in errors:
            print(f"AssertionError: {error}", file=sys.stderr)
        return 1
    args.enable_dp_attention = rules.effective_dp_attention(args)
    directory = os.environ.get("SGLANG_DG_CACHE_DIR") or os.path.expanduser("~/.cache/deep_gemm")
    seconds = float(os.environ.get("SGLANG_SIM_DG_COMPILE_SECONDS") or 0)
    print("sglang_sim %s (a test double of SGLang %s's compile_deep_gemm, not SGLang): "
          "rank %s/%s, %s, into %s" % (__version__, version, args.node_rank, args.nnodes,
                                       layout_of(args), directory), flush=True)
    try:
        held = socket.create_server((args.host, args.port))
    except OSError as exc:
        print("ERROR: cannot start the server at %s:%s: %s" % (args.host, args.port, exc),
              file=sys.stderr, flush=True)
        return 1
    if os.environ.get("SGLANG_SIM_DG_COMPILE_CRASH") == "1":
        held.close()
        print("TimeoutError: DeepGEMM Kernels compilation timeout. (sglang_sim: the server "
              "died, SGLANG_SIM_DG_COMPILE_CRASH=1)", file=sys.stderr, flush=True)
        return 1
    if seconds > timeout:
        time.sleep(timeout)
        print("TimeoutError: DeepGEMM Kernels compilation timeout.", file=sys.stderr, flush=True)
        return 1
    time.sleep(seconds)
    written = write_cache(directory, version, layout_of(args))
    held.close()
    print("DeepGEMM Kernels compilation finished successfully (%d files)." % len(written),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
