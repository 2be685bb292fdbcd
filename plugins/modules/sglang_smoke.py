#!/usr/bin/python
"""Ansible module: smoke-check one SGLang endpoint."""
from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_smoke
short_description: Smoke-check an SGLang endpoint serving Kimi-K2
description:
  - Health, model list, model info, API-key enforcement, chat (plain and SSE streaming)
    with the published "15% of 240" prompt, reasoning/content separation by variant,
    tool calls (plain, streamed, and a tool-result round trip) and metrics.
  - Ranks >= 1 of a multi-node server get the health check only, and the I(bootstrap) ones.
  - A prefill or decode server of a disaggregated deployment (I(disaggregation_mode)) answers
    generation only through its router, which pairs the two halves. It gets health, a
    generation probe (C(/health_generate), which SGLang runs without a peer), the model
    list and info, the API key and metrics. Its answers are checked through the router.
  - Reads only; changes nothing.
options:
  base_url: {description: Endpoint URL, e.g. http://127.0.0.1:30000., type: str, required: true}
  api_key: {description: API key; empty when the endpoint has none., type: str, default: "", no_log: true}
  served_model_name: {description: The one model /v1/models must list., type: str, required: true}
  model_path: {description: What /get_model_info must report., type: str, required: true}
  rank: {description: Node rank of this endpoint., type: int, default: 0}
  reasoning: {description: Expect reasoning_content apart from content (Thinking)., type: bool, required: true}
  tool_calls: {description: A tool-call parser is set; check tool calls., type: bool, required: true}
  metrics: {description: Metrics are enabled; check /metrics., type: bool, default: false}
  disaggregation_mode:
    description: The server's half of a disaggregated deployment; empty for a monolithic one.
    type: str
    default: ""
    choices: ["", prefill, decode]
  bootstrap:
    description:
      - HOST:PORT of each prefill bootstrap server this node must reach (a decode server's
        every rank; a prefill's own), checked right after health, from where the module runs.
      - While one is unreachable, the checks that generate are not run (each would wait out
        SGLang's 300 s bootstrap timeout).
    type: list
    elements: str
    default: []
  timeout: {description: Seconds per request., type: float, default: 300}
"""

EXAMPLES = r"""
- name: Smoke-check the endpoint
  kimi_k2.sglang.sglang_smoke:
    base_url: http://127.0.0.1:30000
    api_key: "{{ sglang_service_api_key }}"
    served_model_name: moonshotai/Kimi-K2-Thinking
    model_path: moonshotai/Kimi-K2-Thinking
    reasoning: true
    tool_calls: true
"""

RETURN = r"""
checks:
  description: One record per check.
  type: list
  elements: dict
  returned: always
  sample: [{name: chat, passed: false, seconds: 1.2, expected: 36 in content, got: "..."}]
passed:
  description: Whether every check passed.
  type: bool
  returned: always
bootstrap_unreachable:
  description: The bootstrap servers (I(bootstrap)) this node could not reach.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_smoke import run_smoke


def main():
    module = AnsibleModule(
        argument_spec={
            "base_url": {"type": "str", "required": True},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "served_model_name": {"type": "str", "required": True},
            "model_path": {"type": "str", "required": True},
            "rank": {"type": "int", "default": 0},
            "reasoning": {"type": "bool", "required": True},
            "tool_calls": {"type": "bool", "required": True},
            "metrics": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 300},
            "disaggregation_mode": {"type": "str", "default": "",
                                    "choices": ["", "prefill", "decode"]},
            "bootstrap": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    p = module.params
    expect = {key: p[key] for key in ("served_model_name", "model_path", "rank", "reasoning",
                                      "tool_calls", "metrics", "disaggregation_mode",
                                      "bootstrap")}
    expect["api_key"] = bool(p["api_key"])
    checks = run_smoke(p["base_url"], p["api_key"], expect, p["timeout"])
    unreachable = [c["name"].split(" ", 1)[1] for c in checks
                   if c["name"].startswith("bootstrap ") and not c["passed"]]
    module.exit_json(changed=False, checks=checks, passed=all(c["passed"] for c in checks),
                     bootstrap_unreachable=unreachable)


if __name__ == "__main__":
    main()
