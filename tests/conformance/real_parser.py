"""Parse argv lists with SGLang's real argument parser (run with the SGLang venv's Python).

stdin: a JSON list of argv lists. stdout: a JSON list of {"ok", "args" | "error"}.
Parse only: nothing is started, no GPU is needed.

Where the version resolves retired spellings before anything reads them (0.5.23:
sglang/srt/arg_groups/parallel_hook.py, handle_deprecated_dp_attention turns `--dp-size N
--enable-dp-attention` into attn_dp_size N), "resolved" also holds the parallel layout
after that step, so two spellings can be compared by what the server will run.
"""
import argparse
import contextlib
import io
import json
import sys

from sglang.srt.server_args import ServerArgs

try:  # 0.5.23 and later
    from sglang.srt.arg_groups.overrides import resolving_view
    from sglang.srt.arg_groups.parallel_hook import handle_deprecated_dp_attention
except ImportError:  # 0.5.6.post1: no resolution step, the namespace is what runs
    handle_deprecated_dp_attention = None

LAYOUT = ("tp_size", "dp_size", "attn_dp_size", "ep_size", "enable_dp_attention")


def resolved_layout(namespace):
    server_args = ServerArgs.from_cli_args(namespace)
    handle_deprecated_dp_attention(server_args)
    view = resolving_view(server_args)
    return {key: getattr(view, key) for key in LAYOUT}


def parse(argv):
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            namespace = parser.parse_args(argv)
    except SystemExit:
        return {"ok": False, "error": stderr.getvalue().strip().splitlines()[-1]}
    result = {"ok": True, "args": json.loads(json.dumps(vars(namespace), default=repr))}
    if handle_deprecated_dp_attention is not None:
        with contextlib.redirect_stderr(io.StringIO()):
            result["resolved"] = resolved_layout(namespace)
    return result


json.dump([parse(argv) for argv in json.load(sys.stdin)], sys.stdout)
