"""Run SGLang's own bench_serving on a host and read back what it measured.

Stdlib only: this runs on the target host, next to the service venv whose Python runs
`python -m sglang.bench_serving`. The API key goes through the environment
(OPENAI_API_KEY, which bench_serving reads), never through the command line.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from typing import Any

from ansible_collections.kimi_k2.sglang.plugins.module_utils.background_job import Job, Progress

# Profile key -> bench_serving flag. A profile is a dict of these keys (see the role's
# defaults); a key left out (or null) keeps bench_serving's own default.
PROFILE_FLAGS = {
    "backend": "--backend",
    "dataset": "--dataset-name",
    "num_prompts": "--num-prompts",
    "max_concurrency": "--max-concurrency",
    "request_rate": "--request-rate",
    "random_input_len": "--random-input-len",
    "random_output_len": "--random-output-len",
    "random_range_ratio": "--random-range-ratio",
    "sharegpt_output_len": "--sharegpt-output-len",
    "sharegpt_context_len": "--sharegpt-context-len",
    "warmup_requests": "--warmup-requests",
    "seed": "--seed",
}

# The figures kept from bench_serving's result line: the report's rows and their context.
RESULT_KEYS = (
    "duration", "completed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "input_throughput", "output_throughput", "total_throughput",
    "max_output_tokens_per_s", "concurrency",
    "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
    "mean_itl_ms", "median_itl_ms", "p99_itl_ms",
    "mean_e2e_latency_ms", "median_e2e_latency_ms", "p99_e2e_latency_ms",
)

# tqdm's bar: "... 430/1000 [02:10<02:52, ...]"; the last one on the stream is current.
_PROGRESS = re.compile(r"(\d+)/(\d+) \[")


def bench_argv(python: str, profile: dict[str, Any], base_url: str, model: str,
               tokenizer: str, dataset_path: str, output_file: str) -> list[str]:
    argv = [python, "-m", "sglang.bench_serving", "--base-url", base_url.rstrip("/"),
            "--served-model-name", model, "--tokenizer", tokenizer,
            "--output-file", output_file]
    if dataset_path:
        argv += ["--dataset-path", dataset_path]
    for key, flag in PROFILE_FLAGS.items():
        if profile.get(key) is not None:
            argv += [flag, str(profile[key])]
    return argv


def parse_progress(text: str) -> tuple[int, int] | None:
    """(done, total) from the last tqdm update in a chunk of stderr, if any."""
    found = _PROGRESS.findall(text)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def read_result(output_file: str) -> dict[str, Any]:
    """The figures of the run bench_serving appended last to its JSONL output file.

    The line also carries /get_server_info, which on SGLang holds the server's arguments
    (the API key among them): only the version is kept."""
    with open(output_file, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    if not lines:
        raise ValueError(f"{output_file} is empty: bench_serving wrote no result")
    record = json.loads(lines[-1])
    result = {key: record.get(key) for key in RESULT_KEYS}
    result["sglang_version"] = (record.get("server_info") or {}).get("version")
    return result


def bench_progress(work_dir: str, total: int) -> Progress:
    """<work_dir>/progress.json of a run: requests done of total, whole seconds elapsed."""
    return Progress(work_dir, done=0, total=total)


def run_bench(argv: list[str], env: dict[str, str], work_dir: str, progress: Progress,
              timeout: float) -> dict[str, Any]:
    """Run bench_serving to the end or to the timeout; return rc, seconds and the log.

    stdout and stderr go to <work_dir>/bench.log (kept for a post-mortem); tqdm's updates
    on stderr become progress.json as they come. At the timeout bench_serving's process
    group is killed, its children with it."""
    log_path = os.path.join(work_dir, "bench.log")
    job = Job(timeout, started=progress.started)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = job.start(argv, log, env=env, cwd=work_dir, stderr=subprocess.PIPE)

        def pump() -> None:
            for chunk in iter(lambda: proc.stderr.read1(4096), b""):
                text = chunk.decode("utf-8", "replace")
                log.write(text.replace("\r", "\n"))
                log.flush()
                found = parse_progress(text)
                if found:
                    progress.write(done=found[0], total=found[1])

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        # A heartbeat: elapsed moves between tqdm updates.
        timed_out = job.supervise(tick=5.0, on_tick=progress.write)
        reader.join(timeout=10)
    rc = proc.returncode
    seconds = round(time.monotonic() - progress.started, 1)
    with open(log_path, encoding="utf-8", errors="replace") as f:
        tail = f.read()[-3000:]
    progress.write(state="finished" if rc == 0 else "failed")
    return {"rc": rc, "timed_out": timed_out, "seconds": seconds, "log": log_path,
            "log_tail": tail}
