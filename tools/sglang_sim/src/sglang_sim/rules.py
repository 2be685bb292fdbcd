"""The cross-flag checks SGLang 0.5.6.post1 makes at start, and the values it derives.

Messages follow the server's own wording closely enough for a log reader; the toolkit's
builder refuses the same layouts earlier, with the inventory variable to change.
"""
from __future__ import annotations

import argparse

KIMI_MOE_INTERMEDIATE = 2048
FP8_BLOCK = 128


def check(args: argparse.Namespace) -> list[str]:
    errors = []
    tp, dp = args.tensor_parallel_size, args.data_parallel_size
    ep = args.expert_parallel_size
    if args.enable_dp_attention and tp % dp != 0:
        errors.append(f"tp_size ({tp}) must be divisible by dp_size ({dp}) with dp attention")
    if (tp * args.pipeline_parallel_size) % args.nnodes != 0:
        errors.append("tp_size * pp_size must be divisible by the number of nodes")
    if dp > 1 and args.nnodes > 1 and not args.enable_dp_attention:
        errors.append("multi-node data parallel is not supported unless dp attention!")
    if args.moe_a2a_backend == "deepep" and ep != tp:
        errors.append("DeepEP requires ep_size == tp_size")
    elif tp % ep != 0:
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
