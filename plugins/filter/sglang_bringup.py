"""Filters over module_utils/sglang_bringup.py, the bring-up settings of issue 16.

  sglang_generation_probe(version)              -> the generation probe's path
  sglang_probe_timeout_problems(timeout, env)   -> messages when the client's probe
                                                   timeout is not above SGLang's own
"""
from __future__ import annotations

from typing import Any

from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_bringup import (
    generation_probe, probe_timeout_problems)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sglang_generation_probe": generation_probe,
                "sglang_probe_timeout_problems": probe_timeout_problems}
