#!/usr/bin/env python3
"""Run SGLang with every secret of its secrets file masked out of what it writes.

SGLang 0.5.6.post1 takes its API key only from argv or its --config file, and then logs
the whole `server_args=ServerArgs(..., api_key='...', ...)` at INFO on every start
(sglang/srt/entrypoints/engine.py, `_launch_subprocesses`); it has no redaction and no
environment variable for the key. So the key would reach the journal whatever file it
comes from. This launcher starts the server as its child with stdout and stderr on one
pipe, replaces each secret by <redacted> in that stream, and writes the rest to its own
stdout (the journal). Filtering the stream, not patching SGLang's logging, covers every
process of the server (scheduler and detokenizer subprocesses inherit the pipe),
tracebacks and prints alike, and does not depend on how a later SGLang words its logs.

    python sglang-launch.py --secrets-file FILE -- -m sglang.launch_server FLAGS...

FILE is the --config file the role writes (`key: <JSON string>` lines); every string in
it is masked, as written and as Python's repr() and JSON would escape it. The child runs
under this Python (the service venv's). Signals systemd sends are passed on to the
child; the launcher exits as the child did (by the same signal if it was killed by one),
so systemd sees the server's own exit.

Shipped by the Ansible role sglang_service; stdlib only.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading

MASK = b"<redacted>"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)
# After the child exits, how long its own children may still write before we stop
# reading (SGLang kills its tree on exit; a stray one must not keep the unit alive).
DRAIN_SECONDS = 10.0


def read_secrets(path: str) -> list[str]:
    """Every string value of a `key: <JSON scalar>` file (the role's secrets.yaml)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as err:
        raise SystemExit(f"sglang-launch: cannot read the secrets file {path}: {err.strerror}")
    secrets = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        _, sep, raw = line.partition(":")
        try:
            value = json.loads(raw.strip()) if sep else None
        except ValueError:
            value = raw.strip()
        if isinstance(value, str) and value:
            secrets.append(value)
    return secrets


def forms(secret: str) -> set[bytes]:
    """The byte strings a secret shows up as: plain, inside repr() quotes, inside JSON."""
    return {secret.encode(), repr(secret)[1:-1].encode(),
            json.dumps(secret)[1:-1].encode(), json.dumps(secret, ensure_ascii=False)[1:-1].encode()}


class Redactor:
    """Masks secrets in a byte stream that arrives in arbitrary chunks.

    Output is held back only while the stream's end could be the start of a secret, so
    progress bars that rewrite a line with \\r flow at once and no secret is ever split
    across two writes."""

    def __init__(self, secrets: list[str]) -> None:
        patterns = set().union(*(forms(s) for s in secrets)) if secrets else set()
        self.patterns = sorted((p for p in patterns if p), key=len, reverse=True)
        self.pending = b""

    def _mask(self, data: bytes) -> bytes:
        for pattern in self.patterns:
            data = data.replace(pattern, MASK)
        return data

    def _held(self, data: bytes) -> int:
        """Length of the longest end of data that begins some pattern (not all of it)."""
        longest = 0
        for pattern in self.patterns:
            for size in range(min(len(pattern) - 1, len(data)), longest, -1):
                if data.endswith(pattern[:size]):
                    longest = size
                    break
        return longest

    def feed(self, data: bytes) -> bytes:
        masked = self._mask(self.pending + data)
        held = self._held(masked)
        self.pending = masked[len(masked) - held:] if held else b""
        return masked[:len(masked) - held]

    def flush(self) -> bytes:
        out, self.pending = self.pending, b""
        return out


def _write(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def _pump(source: int, redactor: Redactor) -> None:
    while True:
        chunk = os.read(source, 65536)
        if not chunk:
            break
        out = redactor.feed(chunk)
        if out:
            _write(out)
    _write(redactor.flush())


def main(argv: list[str]) -> int:
    if "--" not in argv:
        raise SystemExit("usage: sglang-launch --secrets-file FILE -- PYTHON_ARGS...")
    at = argv.index("--")
    parser = argparse.ArgumentParser(prog="sglang-launch")
    parser.add_argument("--secrets-file", required=True)
    ours, child_args = parser.parse_args(argv[:at]), argv[at + 1:]
    if not child_args:
        raise SystemExit("sglang-launch: nothing to run after --")
    secrets = read_secrets(ours.secrets_file)
    # The Hub token comes from the unit's EnvironmentFile; SGLang's children see it too.
    if os.environ.get("HF_TOKEN"):
        secrets.append(os.environ["HF_TOKEN"])
    _write(f"sglang-launch: masking {len(secrets)} secret(s) of {ours.secrets_file} "
           f"in the server's output\n".encode())
    redactor = Redactor(secrets)
    read_end, write_end = os.pipe()
    child = subprocess.Popen([sys.executable, *child_args], stdout=write_end,
                             stderr=write_end, close_fds=True)
    os.close(write_end)
    for signum in FORWARDED:
        signal.signal(signum, lambda sig, _frame: child.send_signal(sig))
    pump = threading.Thread(target=_pump, args=(read_end, redactor), daemon=True)
    pump.start()
    returncode = child.wait()
    pump.join(DRAIN_SECONDS)
    if returncode < 0:
        # Die of the same signal, so systemd reports the server's own end.
        if -returncode != signal.SIGKILL:  # SIGKILL has no handler to reset
            signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
