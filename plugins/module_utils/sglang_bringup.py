"""Bring-up settings of an SGLang server (issue 16): timeouts, the crash-dump folder,
multithreaded weight loading and the generation probe, per pinned SGLang version.

Pure functions, stdlib only. plugins/filter/sglang_launch.py appends bringup_argv() to
the launch command (after which its argv_problems checks every flag against the pinned
version's manifest, as for any other); the role reads generation_probe() for the health
gate and the watchdog. A flag is rendered only where the pinned version's manifest has
it: a setting a version lacks is left out, not guessed.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

# The folder --crash-dump-folder names: on the state disk, created by the unit's
# StateDirectory= (owned by the service account, 0750), so it survives the crash it records.
CRASH_DUMP_FOLDER = "/var/lib/sglang/crash_dumps"

# The generation probe: a one-token generation that fails when the scheduler is stuck.
# Both pinned versions serve it at /health_generate, and answer 503 themselves after
# SGLANG_HEALTH_CHECK_TIMEOUT (default 20 s) without an answer of the scheduler:
# 0.5.6.post1 sglang/srt/entrypoints/http_server.py:136 (the timeout), :409-484 (the
# route); 0.5.23 http_server.py:218 and :721-800. Bare /health is the same handler but
# skips the generation where SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION is false
# (0.5.6.post1 http_server.py:426-431, srt/environ.py:347), so only /health_generate
# means "it generates". Versions not listed fall back to /health.
GENERATION_PROBES = {"0.5.6.post1": "/health_generate", "0.5.23": "/health_generate"}
HEALTH_CHECK_TIMEOUT_DEFAULT = 20

# Flags these settings own: extra args may not set them too.
OWNED = {
    "--watchdog-timeout": "sglang_service_watchdog_timeout",
    "--dist-timeout": "sglang_service_dist_timeout",
    "--crash-dump-folder": "sglang_service_crash_dump_enabled",
    "--model-loader-extra-config": "sglang_service_multithread_load_enabled",
}


def generation_probe(version: str) -> str:
    """The path of the pinned version's generation probe."""
    return GENERATION_PROBES.get(str(version), "/health")


def loader_config(threads: int) -> str:
    """--model-loader-extra-config for multithreaded loading: the two keys 0.5.6.post1's
    DefaultModelLoader accepts (srt/model_loader/loader.py:322; others are refused)."""
    return json.dumps({"enable_multithread_load": True, "num_threads": int(threads)},
                      separators=(",", ":"))


def bringup_argv(r: dict[str, Any], flags: Iterable[str]) -> list[str]:
    """The bring-up flags of a resolved deployment that the pinned version has (flags:
    every option string of its manifest). Unset settings (None, false) add nothing."""
    known = set(flags)
    argv: list[str] = []
    for key, flag in (("watchdog_timeout", "--watchdog-timeout"),
                      ("dist_timeout", "--dist-timeout")):
        if r.get(key) not in (None, "") and flag in known:
            argv += [flag, str(r[key])]
    if _true(r.get("crash_dump_enabled")) and "--crash-dump-folder" in known:
        argv += ["--crash-dump-folder", CRASH_DUMP_FOLDER]
    if _true(r.get("multithread_load_enabled")) and "--model-loader-extra-config" in known:
        argv += ["--model-loader-extra-config", loader_config(r.get("multithread_load_threads") or 8)]
    return argv


def probe_timeout_problems(probe_timeout: Any, extra_env: Any) -> list[str]:
    """The client's probe timeout must exceed SGLang's own (SGLANG_HEALTH_CHECK_TIMEOUT):
    a client that gives up first sends its next probe while SGLang still holds the last
    one, and on a stuck scheduler every probe leaves one request behind (the handler
    cancels only its own wait, http_server.py:472-482), so probes pile up."""
    env = extra_env if isinstance(extra_env, dict) else {}
    try:
        server = float(env.get("SGLANG_HEALTH_CHECK_TIMEOUT") or HEALTH_CHECK_TIMEOUT_DEFAULT)
        client = float(probe_timeout)
    except (TypeError, ValueError):
        return []  # the range rules name a value that is no number
    if client > server:
        return []
    return [f"sglang_service_generation_probe_timeout is {client:g}: SGLang answers a "
            f"generation probe itself after SGLANG_HEALTH_CHECK_TIMEOUT ({server:g} s); set it "
            f"above {server:g}, or probes pile up inside the server"]


def _true(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)
