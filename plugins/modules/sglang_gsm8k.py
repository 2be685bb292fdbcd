#!/usr/bin/python
"""Ansible module: GSM8K accuracy of an SGLang endpoint, for a slice of the questions."""
from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_gsm8k
short_description: Score GSM8K questions against an SGLang endpoint
description:
  - Method C(sglang) reproduces SGLang's few_shot_gsm8k exactly (shots, raw prompt to
    /generate, temperature 0, stop strings, last-integer scoring) so the accuracy is
    comparable with the published figures; method C(chat) asks /v1/chat/completions and
    scores the content.
  - Evaluates questions C(start) to C(start + count) so a playbook can loop over slices
    and show progress; aggregate the returned records with the C(gsm8k_summary) filter.
  - The dataset's sha256 is checked. Retries only on transport errors; every request has
    a timeout and the whole slice a deadline, so it always ends. Reads only.
options:
  base_url: {description: Endpoint URL., type: str, required: true}
  api_key: {description: API key., type: str, default: "", no_log: true}
  dataset_path: {description: GSM8K test.jsonl on the host., type: path, required: true}
  dataset_sha256: {description: Expected sha256 of the file., type: str, default: 3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14}
  method: {description: How to ask., type: str, choices: [sglang, chat], default: sglang}
  model: {description: Served model name (chat method)., type: str, default: ""}
  shots: {description: Few-shot examples (sglang method)., type: int, default: 5}
  start: {description: First question index., type: int, default: 0}
  count: {description: Questions in this slice., type: int, default: 200}
  concurrency: {description: Requests in flight., type: int, default: 128}
  max_new_tokens: {description: Token budget per answer., type: int, default: 512}
  request_timeout: {description: Seconds per request., type: float, default: 600}
  retries: {description: Retries per request on transport errors only., type: int, default: 2}
  deadline: {description: Seconds for the whole slice., type: float, default: 3600}
"""

EXAMPLES = r"""
- name: Score the first 200 questions
  kimi_k2.sglang.sglang_gsm8k:
    base_url: http://127.0.0.1:30000
    api_key: "{{ sglang_service_api_key }}"
    dataset_path: /var/cache/sglang-verify/gsm8k-test.jsonl
"""

RETURN = r"""
records:
  description: Per question - index, label, prediction, tokens, seconds (and error).
  type: list
  elements: dict
  returned: success
seconds:
  description: Wall time of the slice.
  type: float
  returned: success
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.gsm8k import OFFICIAL_SHA256, DatasetError, evaluate, load_dataset


def main():
    module = AnsibleModule(
        argument_spec={
            "base_url": {"type": "str", "required": True},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "dataset_path": {"type": "path", "required": True},
            "dataset_sha256": {"type": "str", "default": OFFICIAL_SHA256},
            "method": {"type": "str", "choices": ["sglang", "chat"], "default": "sglang"},
            "model": {"type": "str", "default": ""},
            "shots": {"type": "int", "default": 5},
            "start": {"type": "int", "default": 0},
            "count": {"type": "int", "default": 200},
            "concurrency": {"type": "int", "default": 128},
            "max_new_tokens": {"type": "int", "default": 512},
            "request_timeout": {"type": "float", "default": 600},
            "retries": {"type": "int", "default": 2},
            "deadline": {"type": "float", "default": 3600},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        lines = load_dataset(p["dataset_path"], p["dataset_sha256"])
    except (OSError, DatasetError) as err:
        module.fail_json(msg=str(err))
    stop = min(p["start"] + p["count"], len(lines))
    result = evaluate(p["base_url"], p["api_key"], lines, list(range(p["start"], stop)),
                      method=p["method"], shots=p["shots"], concurrency=p["concurrency"],
                      max_new_tokens=p["max_new_tokens"],
                      request_timeout=p["request_timeout"], retries=p["retries"],
                      deadline=p["deadline"], model=p["model"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
