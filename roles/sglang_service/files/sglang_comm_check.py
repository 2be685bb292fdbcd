"""Check a multi-node group's communication path before SGLang spends an hour loading.

Run by every rank of a group at once, with the interpreter of the node's SGLang venv
(torch is part of SGLang's install): a torch.distributed rendezvous at node 0's
--dist-init-addr (the address and port the server will use), over the cluster interface
(GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME, as the server gets them), then a GLOO
all-reduce on CPU and, with --nccl, an NCCL all-reduce whose bus bandwidth is measured
against a threshold. The work runs in a child process that is killed at --timeout, so a
wrong interface, a blocked port or a node that cannot reach node 0 fails within a bound,
naming this node, the interface and the port, instead of hanging like the server would.

Usage: sglang-comm-check --node NAME --rank R --world-size N --addr HOST --port P
           [--interface IF] [--timeout S] [--nccl --min-busbw-gbps G --nccl-mib M]
Prints one JSON line: {"ok", "node", "rank", "message", "busbw_gbps"}. Exit 0 when ok.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# What the child prints last, for the parent to read.
RESULT = "COMM_CHECK_RESULT "


def bus_bandwidth_gbps(size_bytes: int, seconds: float, world: int) -> float:
    """NCCL-tests' bus bandwidth of an all-reduce: algorithm bandwidth (bytes / time)
    times 2 (n - 1) / n, the share of the data each link carries; in GB/s (10^9)."""
    if seconds <= 0 or world < 1:
        return 0.0
    return size_bytes / seconds * (2 * (world - 1) / world) / 1e9


def bandwidth_problem(busbw: float, minimum: float, interface: str) -> str:
    """'' when the measured bus bandwidth reaches the fabric's threshold."""
    if minimum <= 0 or busbw >= minimum:
        return ""
    return (f"NCCL all-reduce bus bandwidth {busbw:.1f} GB/s is below "
            f"sglang_service_comm_check_min_busbw_gbps {minimum:g} GB/s "
            f"(interface {interface or 'chosen by NCCL'}): check the fabric (NCCL_DEBUG=INFO "
            f"shows NET/IB or NET/Socket)")


def describe(args: argparse.Namespace) -> str:
    interface = args.interface or "(chosen by GLOO/NCCL: sglang_service_cluster_interface is empty)"
    return (f"{args.node} (rank {args.rank} of {args.world_size}), interface {interface}, "
            f"node 0 at {args.addr}:{args.port}")


def failure(args: argparse.Namespace, why: str) -> str:
    return (f"communication check failed on {describe(args)}: {why}. Check "
            f"sglang_service_cluster_interface, that port {args.port} "
            f"(sglang_service_dist_init_port) is open between the group's nodes, and that "
            f"this node reaches node 0's sglang_service_cluster_address")


def _child(args: argparse.Namespace) -> dict:
    """The torch part: rendezvous, GLOO all-reduce, optionally NCCL with bandwidth."""
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if args.interface:
        os.environ["GLOO_SOCKET_IFNAME"] = args.interface
        os.environ["NCCL_SOCKET_IFNAME"] = args.interface
    timeout = timedelta(seconds=args.timeout)
    dist.init_process_group("gloo", init_method=f"tcp://{args.addr}:{args.port}",
                            rank=args.rank, world_size=args.world_size, timeout=timeout)
    tensor = torch.ones(1024)
    dist.all_reduce(tensor)
    if int(tensor[0].item()) != args.world_size:
        raise RuntimeError(f"GLOO all-reduce gave {tensor[0].item()}, not {args.world_size}")
    result = {"busbw_gbps": None}
    if args.nccl:
        group = dist.new_group(backend="nccl", timeout=timeout)
        torch.cuda.set_device(0)
        data = torch.ones(args.nccl_mib * (1 << 20) // 4, device="cuda")
        dist.all_reduce(data, group=group)             # warm-up: connections, buffers
        torch.cuda.synchronize()
        rounds, began = 5, time.perf_counter()
        for _ in range(rounds):
            dist.all_reduce(data, group=group)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - began) / rounds
        result["busbw_gbps"] = bus_bandwidth_gbps(data.numel() * 4, seconds, args.world_size)
    dist.destroy_process_group()
    return result


def check(args: argparse.Namespace, argv: list[str]) -> dict:
    """Run the child, bounded; the verdict as a dict."""
    out = {"ok": False, "node": args.node, "rank": args.rank, "busbw_gbps": None}
    try:
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *argv],
                              capture_output=True, text=True, timeout=args.timeout + 5, check=False)
    except subprocess.TimeoutExpired:
        out["message"] = failure(args, f"no rendezvous or all-reduce within {args.timeout} s "
                                       "(sglang_service_comm_check_timeout)")
        return out
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        error = last_error(done.stderr) or f"exit code {done.returncode}"
        if "No module named 'torch'" in error:
            error = (f"{sys.executable} has no torch: point sglang_service_comm_check_python "
                     f"at the python of the node's SGLang venv")
        out["message"] = failure(args, error)
        return out
    out.update(json.loads(lines[-1][len(RESULT):]))
    problem = bandwidth_problem(out["busbw_gbps"] or 0.0, args.min_busbw_gbps, args.interface) \
        if args.nccl else ""
    out["ok"] = not problem
    out["message"] = (failure(args, problem) if problem else
                      f"communication check passed on {describe(args)}: GLOO all-reduce"
                      + (f", NCCL bus bandwidth {out['busbw_gbps']:.1f} GB/s" if args.nccl else ""))
    return out


def last_error(stderr: str) -> str:
    """The exception line of a traceback (or the last line), without the noise."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[:500]
    return lines[-1][:500] if lines else ""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--node", required=True)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interface", default="")
    parser.add_argument("--timeout", type=int, default=60)
    parser.add_argument("--nccl", action="store_true")
    parser.add_argument("--min-busbw-gbps", type=float, default=0.0)
    parser.add_argument("--nccl-mib", type=int, default=256)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.child:
        print(RESULT + json.dumps(_child(args)), flush=True)
        return 0
    result = check(args, argv)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
