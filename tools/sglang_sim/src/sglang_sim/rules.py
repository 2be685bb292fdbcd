"""The cross-flag checks SGLang 0.5.6.post1 makes at start, and the values it derives.

Messages follow the server's own wording closely enough for a log reader; the toolkit's
builder refuses the same layouts earlier, with the inventory variable to change.
"""
from __future__ import annotations

import argparse

KIMI_MOE_INTERMEDIATE = 2048
FP8_BLOCK = 128

# MoE all-to-all backends over which SGLang makes expert parallelism span the TP group:
# it sets ep_size = tp_size itself, with a warning, whatever --ep-size said (0.5.6.post1
# srt/server_args.py:1587-1607, _handle_a2a_moe; 0.5.23 srt/arg_groups/overrides.py:
# 1578-1620, _a2a_ep_size, which adds more backends).
EP_SPANNING_A2A = frozenset({"deepep", "mooncake", "ascend_fuseep", "megamoe", "deepep_v2",
                             "nixl", "flashinfer", "flashinfer_megamoe", "mori", "pplx"})


def check(args: argparse.Namespace) -> list[str]:
    """The start-time errors; also applies the value SGLang derives for ep (see
    EP_SPANNING_A2A), as the server does before it checks the layout."""
    errors = []
    tp, dp = args.tensor_parallel_size, args.data_parallel_size
    if args.moe_a2a_backend in EP_SPANNING_A2A and args.expert_parallel_size != tp:
        print(f"WARNING: {args.moe_a2a_backend} MoE is enabled. The expert parallel size is "
              f"adjusted to be the same as the tensor parallel size[{tp}].", flush=True)
        args.expert_parallel_size = tp
        if hasattr(args, "ep_size"):  # 0.5.23's name of the same field
            args.ep_size = tp
    ep = args.expert_parallel_size
    if args.enable_dp_attention and tp % dp != 0:
        errors.append(f"tp_size ({tp}) must be divisible by dp_size ({dp}) with dp attention")
    if (tp * args.pipeline_parallel_size) % args.nnodes != 0:
        errors.append("tp_size * pp_size must be divisible by the number of nodes")
    if dp > 1 and args.nnodes > 1 and not args.enable_dp_attention:
        errors.append("multi-node data parallel is not supported unless dp attention!")
    # EPLB spreads experts over EP ranks: `assert self.ep_size > 1` (0.5.6.post1
    # server_args.py:1621-1622; 0.5.23 arg_groups/parallel_hook.py:790-791).
    if args.enable_eplb and ep <= 1:
        errors.append("--enable-eplb needs ep_size > 1")
    if tp % ep != 0:
        errors.append(f"tp_size ({tp}) must be divisible by ep_size ({ep})")
    elif (KIMI_MOE_INTERMEDIATE // (tp // ep)) % FP8_BLOCK != 0:
        errors.append(f"The output_size of gate's and up's weight = "
                      f"{KIMI_MOE_INTERMEDIATE // (tp // ep)} is not divisible by weight "
                      f"quantization block_n = {FP8_BLOCK}.")
    if args.served_model_name and ":" in args.served_model_name:
        errors.append("served_model_name cannot contain a colon (':')")
    if args.nnodes > 1 and not args.dist_init_addr:
        errors.append("--dist-init-addr is required when nnodes > 1")
    return errors


def effective_dp_attention(args: argparse.Namespace) -> bool:
    # SGLang silently turns dp-attention off when dp is 1.
    return bool(args.enable_dp_attention and args.data_parallel_size > 1)
