"""Plan benchmark runs and shape their report. Pure functions, used on the controller.

A profile is a dict of bench_serving settings (plugins/module_utils/sglang_bench.PROFILE_FLAGS)
plus an optional `timeout`. Runs are the selected profiles in order, then the sweep: one
profile repeated over a list of concurrencies, `prompts_per_concurrency` prompts each.
"""
from __future__ import annotations

from typing import Any

from ansible_collections.kimi_k2.sglang.plugins.filter.sglang_pd_ops import sglang_benchmark_pd_markdown
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_bench import PROFILE_FLAGS

BACKENDS = ("sglang", "sglang-oai", "sglang-oai-chat")
DATASETS = ("sharegpt", "random", "random-ids")
SHAREGPT_DATASETS = ("sharegpt", "random")  # `random` samples ShareGPT text too
PROFILE_KEYS = set(PROFILE_FLAGS) | {"timeout"}

# The report's rows: (key, label, unit, higher is better).
METRICS = (
    ("request_throughput", "Request throughput", "req/s", True),
    ("input_throughput", "Input token throughput", "tok/s", True),
    ("output_throughput", "Output token throughput", "tok/s", True),
    ("total_throughput", "Total token throughput", "tok/s", True),
    ("max_output_tokens_per_s", "Peak output token throughput", "tok/s", True),
    ("mean_ttft_ms", "Mean TTFT", "ms", False),
    ("median_ttft_ms", "Median TTFT", "ms", False),
    ("p99_ttft_ms", "P99 TTFT", "ms", False),
    ("mean_tpot_ms", "Mean TPOT", "ms", False),
    ("median_tpot_ms", "Median TPOT", "ms", False),
    ("p99_tpot_ms", "P99 TPOT", "ms", False),
    ("mean_itl_ms", "Mean ITL", "ms", False),
    ("median_itl_ms", "Median ITL", "ms", False),
    ("p99_itl_ms", "P99 ITL", "ms", False),
    ("mean_e2e_latency_ms", "Mean E2E latency", "ms", False),
    ("median_e2e_latency_ms", "Median E2E latency", "ms", False),
    ("p99_e2e_latency_ms", "P99 E2E latency", "ms", False),
)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _profile_problems(name: str, profile: Any, where: str) -> list[str]:
    if not isinstance(profile, dict):
        return [f"{where}: profile {name} must be a mapping of bench_serving settings"]
    problems = [f"{where}: profile {name} has unknown key {key!r}; known keys: "
                f"{', '.join(sorted(PROFILE_KEYS))}" for key in profile if key not in PROFILE_KEYS]
    if profile.get("dataset") not in DATASETS:
        problems.append(f"{where}: profile {name} needs dataset one of {', '.join(DATASETS)}, "
                        f"got {profile.get('dataset')!r}")
    if profile.get("backend", "sglang") not in BACKENDS:
        problems.append(f"{where}: profile {name} has backend {profile.get('backend')!r}; "
                        f"use one of {', '.join(BACKENDS)}")
    if not _positive_int(profile.get("num_prompts")):
        problems.append(f"{where}: profile {name} needs num_prompts, a positive integer")
    for key in ("max_concurrency", "timeout", "random_input_len", "random_output_len"):
        if profile.get(key) is not None and not _positive_int(profile[key]):
            problems.append(f"{where}: profile {name}: {key} must be a positive integer "
                            f"(or left out), got {profile[key]!r}")
    rate = profile.get("request_rate")
    if rate is not None and rate != "inf" and not (
            isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0):
        problems.append(f"{where}: profile {name}: request_rate must be a positive number "
                        f"or 'inf', got {rate!r}")
    return problems


def sglang_benchmark_profiles(published: dict[str, Any], custom: dict[str, Any]) -> dict:
    """The published profiles with the user's added (a user profile of the same name wins)."""
    return {**published, **(custom or {})}


def sglang_benchmark_problems(settings: dict[str, Any]) -> list[str]:
    """Everything wrong with the benchmark settings, each naming the variable to fix."""
    profiles = sglang_benchmark_profiles(settings["published"], settings["custom"])
    problems = []
    for name in settings["custom"] or {}:
        problems += _profile_problems(name, settings["custom"][name],
                                      "sglang_benchmark_custom_profiles")
    selected = settings["run"] or []
    if not isinstance(selected, list):
        return problems + ["sglang_benchmark_run must be a list of profile names"]
    for name in selected:
        if name not in profiles:
            problems.append(f"sglang_benchmark_run names profile {name!r}, which is neither "
                            f"published ({', '.join(settings['published'])}) nor in "
                            "sglang_benchmark_custom_profiles")
    sweep = settings["sweep"] or []
    if not isinstance(sweep, list) or not all(_positive_int(c) for c in sweep):
        problems.append("sglang_benchmark_sweep must be a list of positive concurrencies, "
                        f"e.g. [1, 8, 32, 64, 100]; got {sweep!r}")
        sweep = []
    if sweep and settings["sweep_profile"] not in profiles:
        problems.append(f"sglang_benchmark_sweep_profile {settings['sweep_profile']!r} is "
                        "not a known profile")
    if sweep and not _positive_int(settings["prompts_per_concurrency"]):
        problems.append("sglang_benchmark_sweep_prompts_per_concurrency must be a positive "
                        "integer")
    if not selected and not sweep:
        problems.append("nothing to run: set sglang_benchmark_run (e.g. [latency, "
                        "throughput]) or sglang_benchmark_sweep")
    if problems:
        return problems
    runs = sglang_benchmark_runs(settings)
    if any(r["profile"]["dataset"] in SHAREGPT_DATASETS for r in runs):
        if not settings["sharegpt_src"] and not settings["sharegpt_url"]:
            problems.append("a profile uses ShareGPT: set sglang_benchmark_sharegpt_src (a "
                            "staged copy) or sglang_benchmark_sharegpt_url")
        if not settings["sharegpt_sha256"]:
            problems.append("a profile uses ShareGPT but sglang_benchmark_sharegpt_sha256 is "
                            "empty: set it to the sha256 of the copy you trust (sha256sum "
                            "ShareGPT_V3_unfiltered_cleaned_split.json), or use dataset "
                            "random-ids, which needs no download")
    if not settings["tokenizer"]:
        problems.append("sglang_benchmark_tokenizer is empty: set the model's tokenizer (a "
                        "directory of the staged weights or the Hub repo id in HF_HOME)")
    return problems


def sglang_benchmark_runs(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs in order: each selected profile, then each sweep point."""
    profiles = sglang_benchmark_profiles(settings["published"], settings["custom"])
    runs = [{"name": name, "profile_name": name, "concurrency": None,
             "profile": dict(profiles[name])} for name in settings["run"] or []]
    base = profiles.get(settings["sweep_profile"], {})
    for concurrency in settings["sweep"] or []:
        runs.append({"name": f"sweep-c{concurrency}", "profile_name": settings["sweep_profile"],
                     "concurrency": concurrency, "profile": {
                         **base, "max_concurrency": concurrency,
                         "num_prompts": concurrency * settings["prompts_per_concurrency"]}})
    for run in runs:
        run["timeout"] = run["profile"].pop("timeout", None) or settings["timeout"]
    return runs


def sglang_benchmark_outcome(run: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """A run as recorded from its async_status: the figures, or why it failed. A run in
    which any request failed is a failed run: its figures would flatter the server."""
    result = outcome.get("result")
    expected = run["profile"]["num_prompts"]
    if not outcome.get("finished"):
        error = "did not finish (the runner stopped answering)"
    elif outcome.get("failed") or not result:
        error = outcome.get("msg") or "failed without a message"
    elif result.get("completed") != expected:
        error = (f"{expected - (result.get('completed') or 0)} of {expected} requests failed "
                 f"(see {outcome.get('log')})")
    else:
        error = ""
    return {**run, "result": result, "seconds": outcome.get("seconds"),
            "log": outcome.get("log"), "argv": outcome.get("argv", []),
            "error": f"{run['name']}: {error}" if error else ""}


def sglang_benchmark_rows(metrics: dict[str, Any] | None, reference: dict[str, Any] | None
                          ) -> list[dict[str, Any]]:
    """The report table: every metric, ours beside the reference figure and their ratio."""
    figures = (reference or {}).get("figures") or {}
    rows = []
    for key, label, unit, higher_is_better in METRICS:
        ours = (metrics or {}).get(key)
        theirs = figures.get(key)
        ratio = ours / theirs if ours is not None and theirs else None
        rows.append({"key": key, "label": label, "unit": unit, "ours": ours,
                     "reference": theirs, "ratio": ratio,
                     "better": "higher" if higher_is_better else "lower"})
    return rows


def _run_report(run: dict[str, Any], variant: str, references: dict[str, Any]
                ) -> dict[str, Any]:
    reference = (references or {}).get(run["profile_name"]) if run["concurrency"] is None \
        else None
    if reference and variant not in reference.get("variants", [variant]):
        reference = None  # a published Instruct figure says nothing about Thinking
    metrics = run.get("result")
    return {**run, "metrics": metrics, "reference": reference, "passed": not run["error"],
            "rows": sglang_benchmark_rows(metrics, reference)}


def sglang_benchmark_report(hosts: list[str], hostvars: dict[str, Any], inventory: str,
                            timestamp: str) -> dict[str, Any]:
    """Every server's runs with their tables; servers not benchmarked say why."""
    rows = []
    for host in hosts:
        facts = hostvars[host].get("sglang_benchmark_result")
        if facts is None:
            verdict = hostvars[host].get("sglang_verify_result") or {}
            if verdict.get("rank", 0):
                continue  # ranks >= 1 serve no API: the group is benchmarked at rank 0
            rows.append({"host": host, "benchmarked": False, "passed": False, "runs": [],
                         "why": "failed verification (see the verify report)"
                         if verdict and not verdict.get("passed")
                         else "no benchmark result (unreachable or failed earlier)"})
            continue
        if facts.get("through_router"):
            # A prefill or decode server: benchmarked as its pair, through its router.
            rows.append({**facts, "benchmarked": False, "passed": True, "runs": [],
                         "why": facts["through_router"]})
            continue
        runs = [_run_report(r, facts["variant"], facts.get("reference"))
                for r in facts.get("runs", [])]
        benchmarked = not facts.get("skipped")
        rows.append({**facts, "benchmarked": benchmarked, "runs": runs,
                     "why": facts.get("skipped", ""),
                     "passed": benchmarked and all(r["passed"] for r in runs)})
    return {"inventory": inventory, "timestamp": timestamp,
            "passed": bool(rows) and all(r["passed"] for r in rows), "hosts": rows}


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:,.2f}"


def sglang_benchmark_markdown(run: dict[str, Any], host: dict[str, Any]) -> str:
    """One run's section: what ran against what, then every metric beside the reference."""
    profile = run["profile"]
    settings = ", ".join(f"{k} {v}" for k, v in profile.items())
    lines = [f"### {host['host']} · {run['name']}", "",
             f"- Server: {host['group']} ({host['variant']}, SGLang "
             f"{(run.get('metrics') or {}).get('sglang_version') or host['sglang_version']}), "
             f"{host['url']}, bench_serving on {host['runner']}",
             f"- Profile: {settings}"]
    if run.get("metrics"):
        m = run["metrics"]
        lines.append(f"- Completed {m['completed']} of {profile['num_prompts']} requests in "
                     f"{m['duration']:.1f} s")
    if run["error"]:
        lines += [f"- **FAILED**: {run['error']}", ""]
        return "\n".join(lines) + "\n"
    reference = run.get("reference")
    lines.append(f"- Reference: {reference['source']}" if reference
                 else "- Reference: none for this profile and model")
    lines += ["", "| Metric | Ours | Reference | Ours / reference |", "|---|---:|---:|---:|"]
    for row in run["rows"]:
        ratio = "–" if row["ratio"] is None else f"{row['ratio']:.2f} ({row['better']} is better)"
        lines.append(f"| {row['label']} ({row['unit']}) | {_number(row['ours'])} | "
                     f"{_number(row['reference'])} | {ratio} |")
    if run.get("pd"):  # through a prefill/decode router: the figures per node of each pool
        lines += ["", sglang_benchmark_pd_markdown(run["pd"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sglang_benchmark_problems": sglang_benchmark_problems,
                "sglang_benchmark_outcome": sglang_benchmark_outcome,
                "sglang_benchmark_runs": sglang_benchmark_runs,
                "sglang_benchmark_report": sglang_benchmark_report,
                "sglang_benchmark_markdown": sglang_benchmark_markdown}
