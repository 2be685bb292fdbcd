"""Filters over module_utils/deep_gemm_cache.py, the DeepGEMM compile cache (issue 16 item 4).

  deep_gemm_cache_key(argv, version, gpu_model) -> the cache's directory name
  deep_gemm_compile_argv(argv, timeout)          -> the precompile's arguments
  deep_gemm_compile_command(argv, spec)          -> systemd-run's argv for the precompile
  deep_gemm_cache_plan(members, me)              -> what host `me` does: none, build, copy
  deep_gemm_cache_copies(plans)                  -> the distinct (source, key) of the copies
  deep_gemm_cache_problems(enabled, version)     -> messages where the cache cannot be built
"""
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.kimi_k2.sglang.plugins.module_utils import deep_gemm_cache as dg


def cache_key(argv: list[Any], version: str, gpu_model: str) -> str:
    try:
        return dg.key([str(a) for a in argv], str(version), str(gpu_model))
    except ValueError as exc:
        raise AnsibleFilterError(
            "deep_gemm_cache_key: %s (sglang_service_sglang_version, sglang_service_gpu_model)"
            % exc)


def compile_argv(argv: list[Any], timeout: Any) -> list[str]:
    return dg.compile_argv(argv, int(timeout))


def compile_command(argv: list[Any], spec: dict[str, Any]) -> list[str]:
    return dg.compile_command(argv, spec)


def cache_plan(members: list[Any], me: str) -> dict[str, Any]:
    present = [dict(m) for m in members if m]
    if me not in {m["host"] for m in present}:
        raise AnsibleFilterError("deep_gemm_cache_plan: %s reported no cache state" % me)
    return dg.plan(present, me)


def cache_copies(plans: list[Any]) -> list[dict[str, str]]:
    return dg.copies([p for p in plans if p])


def cache_problems(enabled: Any, version: str) -> list[str]:
    if not enabled or str(version) in dg.COMPILE_ENTRY_POINTS:
        return []
    return ["sglang_service_deep_gemm_cache_enabled is true, but the toolkit knows SGLang's "
            "precompile entry point only for %s, not %s: set it false for this version"
            % (", ".join(sorted(dg.COMPILE_ENTRY_POINTS)), version)]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"deep_gemm_cache_key": cache_key,
                "deep_gemm_compile_argv": compile_argv,
                "deep_gemm_compile_command": compile_command,
                "deep_gemm_cache_plan": cache_plan,
                "deep_gemm_cache_copies": cache_copies,
                "deep_gemm_cache_problems": cache_problems}
