#!/usr/bin/env python3
"""Start the gateway (smg or sglang-router) with its API key and worker list read from files.

Both gateways take their key only as --api-key, which `ps` and the systemd unit would
show. This launcher runs under the gateway venv's Python: it parses the flags with the
gateway's own parser (<package>.launch_router.parse_router_args, so they are checked
exactly as `smg launch` or `python -m sglang_router.launch_router` checks them), sets the
key and the worker URLs on the parsed RouterArgs, and starts the gateway in this process
(which retitles itself smg::router or sglang::router).

    python sglang-router-launch.py --package smg|sglang_router \
        --api-key-file FILE --worker-urls-file FILE -- FLAGS...

The worker file holds one worker per line ('#' comments allowed): a URL (a regular
worker), or, for a gateway started with --pd-disaggregation, "prefill URL BOOTSTRAP_PORT"
or "decode URL", which become the gateway's own --prefill URL BOOTSTRAP_PORT and
--decode URL flags (parsed by its parser like the rest). Ansible rewrites the file when
the inventory's servers change, and changes the running gateway's workers through its
/workers API, so a worker change needs no restart and a reboot still comes back complete.

Shipped by the Ansible role sglang_router; stdlib plus the installed gateway package.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Given from files; and flags whose value is a secret (smg's per-tenant and control-plane
# keys too): none of them may be on the command line.
OWNED = ("--api-key", "--worker-urls", "--tenant-api-key", "--control-plane-api-keys",
         "--prefill", "--decode")
PACKAGES = ("smg", "sglang_router")


def split_argv(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Return (our options, the router's flags). Refuses the key on the command line."""
    if "--" not in argv:
        raise SystemExit("usage: sglang-router-launch --package smg|sglang_router "
                         "--api-key-file FILE --worker-urls-file FILE -- ROUTER_FLAGS...")
    at = argv.index("--")
    parser = argparse.ArgumentParser(prog="sglang-router-launch")
    parser.add_argument("--package", choices=PACKAGES, default="sglang_router")
    parser.add_argument("--api-key-file", required=True)
    parser.add_argument("--worker-urls-file", required=True)
    ours, flags = parser.parse_args(argv[:at]), argv[at + 1:]
    for flag in flags:
        if flag.split("=", 1)[0] in OWNED:
            raise SystemExit(f"refusing {flag.split('=', 1)[0]} among the router flags: "
                             "a key would show in ps; the key and the workers come "
                             "from their files")
    return ours, flags


def read_key(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.read().strip()
    except OSError as err:
        raise SystemExit(f"cannot read the API key file {path}: {err.strerror}")
    if not key:
        raise SystemExit(f"the API key file {path} is empty")
    return key


def read_workers(path: str) -> tuple[list[str], list[str]]:
    """(regular worker URLs, the gateway's --prefill/--decode flags) from the worker file."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = [line.split("#", 1)[0].split() for line in handle]
    except OSError as err:
        raise SystemExit(f"cannot read the worker URL file {path}: {err.strerror}")
    urls: list[str] = []
    pd_flags: list[str] = []
    for number, fields in enumerate(lines, 1):
        if len(fields) == 1 and fields[0] not in ("prefill", "decode"):
            urls.append(fields[0])
        elif len(fields) in (2, 3) and fields[0] == "prefill":
            pd_flags += ["--prefill", *fields[1:]]
        elif len(fields) == 2 and fields[0] == "decode":
            pd_flags += ["--decode", fields[1]]
        elif fields:
            raise SystemExit(f"{path}:{number}: expected URL, 'prefill URL BOOTSTRAP_PORT' "
                             f"or 'decode URL', not {' '.join(fields)!r}")
    return urls, pd_flags


def main(argv: list[str]) -> None:
    ours, flags = split_argv(argv)
    key = read_key(ours.api_key_file)
    urls, pd_flags = read_workers(ours.worker_urls_file)
    if pd_flags and "--pd-disaggregation" not in flags:
        raise SystemExit(f"{ours.worker_urls_file} lists prefill/decode workers, but the "
                         "gateway is not started with --pd-disaggregation")
    if urls and "--pd-disaggregation" in flags:
        raise SystemExit(f"{ours.worker_urls_file} lists regular workers ({urls[0]}), but "
                         "the gateway is started with --pd-disaggregation")
    gateway = importlib.import_module(f"{ours.package}.launch_router")
    router_args = gateway.parse_router_args(flags + pd_flags)
    router_args.api_key = key
    router_args.worker_urls = urls
    gateway.launch_router(router_args)


if __name__ == "__main__":
    main(sys.argv[1:])
