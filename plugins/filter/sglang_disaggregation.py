"""Filters over module_utils/sglang_disaggregation.py, prefill/decode disaggregation (issue 17).

  sglang_disaggregation_environment(ib_devices, max_dispatch_tokens)
      -> the environment PD and DeepEP add to the server's (NCCL_IB_HCA, ...)
  sglang_disaggregation_topology_problems(host, mode, group_names, routers)
      -> messages when a PD host and the routers' pools disagree (the preflight's);
         routers: [[router host, its prefill group, its decode group], ...]
"""
from __future__ import annotations

from typing import Any

from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_disaggregation import (
    environment, topology_problems)


def _topology_problems(host: str, mode: Any, group_names: list[str],
                       routers: list[list[Any]]) -> list[str]:
    return topology_problems(host, mode, group_names, [
        {"host": router, "prefill_group": prefill or None, "decode_group": decode or None}
        for router, prefill, decode in routers])


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sglang_disaggregation_environment": environment,
                "sglang_disaggregation_topology_problems": _topology_problems}
