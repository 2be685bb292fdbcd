"""Parse argv lists with SGLang's real argument parser (run with the SGLang venv's Python).

stdin: a JSON list of argv lists. stdout: a JSON list of {"ok", "args" | "error"}.
Parse only: nothing is started, no GPU is needed.
"""
import argparse
import contextlib
import io
import json
import sys

from sglang.srt.server_args import ServerArgs


def parse(argv):
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            namespace = parser.parse_args(argv)
    except SystemExit:
        return {"ok": False, "error": stderr.getvalue().strip().splitlines()[-1]}
    return {"ok": True, "args": json.loads(json.dumps(vars(namespace), default=repr))}


json.dump([parse(argv) for argv in json.load(sys.stdin)], sys.stdout)
