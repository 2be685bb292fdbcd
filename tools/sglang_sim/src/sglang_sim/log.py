"""SGLang's log lines: `[YYYY-mm-dd HH:MM:SS] message` on stderr, at --log-level.

SGLang configures the root logger so (sglang/srt/utils/common.py, configure_logger), and
the lines of it that matter to the toolkit are reproduced word for word, secrets and
all: a test double that logged less than SGLang would hide what reaches the journal.
"""
from __future__ import annotations

import sys
import time

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_threshold = _LEVELS["info"]


def set_level(name: str) -> None:
    global _threshold
    _threshold = _LEVELS.get(name.lower(), _LEVELS["info"])


def log(message: str, level: str = "warning") -> None:
    if _LEVELS[level] >= _threshold:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def server_args_line(args: object) -> str:
    """engine.py logs f"{server_args=}": the dataclass repr, every field with repr()."""
    fields = ", ".join(f"{name}={value!r}" for name, value in vars(args).items())
    return f"server_args=ServerArgs({fields})"
