#!/usr/bin/python
"""Ansible module: one run of SGLang's bench_serving against an endpoint."""
from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_bench_serving
short_description: Run SGLang's bench_serving once and return its figures
description:
  - Runs C(python -m sglang.bench_serving) with the given Python (the service venv's, which
    has SGLang and its dependencies) against C(base_url), for one profile.
  - The API key reaches bench_serving as OPENAI_API_KEY in its environment, never on its
    command line. Its result line also holds the server's arguments, so the output file
    is deleted once read and only the figures and the SGLang version are returned.
  - Writes C(work_dir)/progress.json (state, done, total, elapsed) while it runs, so a play
    that started it with C(async) can show progress (kimi_k2.sglang.job_progress reads
    it), and C(work_dir)/bench.log.
  - Kills the run, its whole process group, at C(timeout) seconds and fails, naming the
    timeout and the log's tail.
options:
  python: {description: Python with SGLang installed., type: path, required: true}
  base_url: {description: Endpoint URL., type: str, required: true}
  api_key: {description: API key., type: str, default: "", no_log: true}
  model: {description: Served model name., type: str, required: true}
  tokenizer: {description: Tokenizer directory or Hub id (read offline)., type: str, required: true}
  profile: {description: Profile (keys of PROFILE_FLAGS in plugins/module_utils/sglang_bench.py)., type: dict, required: true}
  dataset_path: {description: Staged dataset file; empty for random-ids., type: path, default: ""}
  dataset_sha256: {description: Its expected sha256; checked before the run., type: str, default: ""}
  work_dir: {description: Private directory for the log, progress and output., type: path, required: true}
  timeout: {description: Seconds the run may take., type: float, default: 3600}
  environment: {description: More environment (HF_HOME, ...)., type: dict, default: {}}
"""

EXAMPLES = r"""
- name: Run the published latency profile
  kimi_k2.sglang.sglang_bench_serving:
    python: /opt/sglang/venvs/sglang-0.5.6.post1/bin/python
    base_url: http://127.0.0.1:30000
    api_key: "{{ sglang_service_api_key }}"
    model: moonshotai/Kimi-K2-Instruct
    tokenizer: moonshotai/Kimi-K2-Instruct
    profile: {dataset: sharegpt, num_prompts: 10, max_concurrency: 1}
    dataset_path: /var/cache/sglang-benchmark/ShareGPT_V3_unfiltered_cleaned_split.json
    dataset_sha256: "{{ sglang_benchmark_sharegpt_sha256 }}"
    work_dir: /var/tmp/sglang-benchmark/latency
"""

RETURN = r"""
result:
  description: bench_serving's figures (throughputs, TTFT/TPOT/ITL/E2E in ms) and sglang_version.
  type: dict
  returned: success
seconds:
  description: Wall time of the run, start-up included.
  type: float
  returned: always
argv:
  description: The command that ran (it holds no secret).
  type: list
  elements: str
  returned: always
log:
  description: Path of the run's log on the host.
  type: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_bench import bench_argv, bench_progress, read_result, run_bench
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sha256 import sha256_file


def main():
    module = AnsibleModule(
        argument_spec={
            "python": {"type": "path", "required": True},
            "base_url": {"type": "str", "required": True},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "model": {"type": "str", "required": True},
            "tokenizer": {"type": "str", "required": True},
            "profile": {"type": "dict", "required": True},
            "dataset_path": {"type": "path", "default": ""},
            "dataset_sha256": {"type": "str", "default": ""},
            "work_dir": {"type": "path", "required": True},
            "timeout": {"type": "float", "default": 3600},
            "environment": {"type": "dict", "default": {}},
        },
    )
    p = module.params
    # First thing, so a poll always finds the file, even when the run fails to start.
    progress = bench_progress(p["work_dir"], int(p["profile"].get("num_prompts") or 0))
    if p["dataset_path"] and p["dataset_sha256"]:
        found = sha256_file(p["dataset_path"])
        if found != p["dataset_sha256"]:
            progress.write(state="failed")
            module.fail_json(msg=f"{p['dataset_path']} has sha256 {found}, expected "
                                 f"{p['dataset_sha256']}: restage the dataset")
    output_file = os.path.join(p["work_dir"], "result.jsonl")
    if os.path.exists(output_file):
        os.remove(output_file)  # bench_serving appends: a re-run must not read the old line
    argv = bench_argv(p["python"], p["profile"], p["base_url"], p["model"], p["tokenizer"],
                      p["dataset_path"], output_file)
    env = {**os.environ, **{k: str(v) for k, v in p["environment"].items()},
           "OPENAI_API_KEY": p["api_key"], "PYTHONUNBUFFERED": "1"}
    env.pop("API_KEY", None)  # bench_serving's fallback, with a different header format
    run = run_bench(argv, env, p["work_dir"], progress, p["timeout"])
    out = {"argv": argv, "seconds": run["seconds"], "log": run["log"], "changed": False}
    try:
        result = read_result(output_file) if run["rc"] == 0 else None
    except (OSError, ValueError) as err:
        result, run["log_tail"] = None, f"{err}\n{run['log_tail']}"
    finally:
        if os.path.exists(output_file):
            os.remove(output_file)
    if result is None:
        why = (f"timed out after {p['timeout']:.0f} s" if run["timed_out"]
               else f"exited with {run['rc']}")
        module.fail_json(msg=f"bench_serving {why}; log {run['log']}, its tail:\n"
                             f"{run['log_tail'][-1500:]}", **out)
    if not result.get("completed"):
        module.fail_json(msg="bench_serving completed no request; log tail:\n"
                             f"{run['log_tail'][-1500:]}", result=result, **out)
    module.exit_json(result=result, **out)


if __name__ == "__main__":
    main()
