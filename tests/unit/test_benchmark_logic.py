"""Benchmark planning, outcome and report logic (plugins/filter/sglang_benchmark.py) and
the bench_serving helpers that run on the host (plugins/module_utils/sglang_bench.py)."""
import json
import sys

import pytest
import yaml

from conftest import ROOT

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_benchmark as bench
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_bench

PUBLISHED = yaml.safe_load((ROOT / "roles" / "sglang_benchmark" / "vars" / "main.yml")
                           .read_text())["__sglang_benchmark_published_profiles"]


@pytest.fixture
def settings():
    return {"published": PUBLISHED, "custom": {}, "run": ["latency", "throughput"],
            "sweep": [], "sweep_profile": "throughput", "prompts_per_concurrency": 10,
            "timeout": 3600, "sharegpt_src": "", "sharegpt_url": "https://example/x.json",
            "sharegpt_sha256": "ab" * 32, "tokenizer": "moonshotai/Kimi-K2-Instruct"}


def test_published_profiles_are_the_published_runs():
    assert PUBLISHED["latency"] == {"dataset": "sharegpt", "num_prompts": 10,
                                    "max_concurrency": 1}
    assert PUBLISHED["throughput"] == {"dataset": "sharegpt", "num_prompts": 1000,
                                       "max_concurrency": 100}


def test_valid_settings_have_no_problems(settings):
    assert bench.sglang_benchmark_problems(settings) == []


@pytest.mark.parametrize("change, needle", [
    ({"run": ["latency", "nonesuch"]}, "sglang_benchmark_run names profile 'nonesuch'"),
    ({"run": [], "sweep": []}, "nothing to run"),
    ({"sweep": [0, 8]}, "sglang_benchmark_sweep must be a list of positive"),
    ({"sweep": [8], "sweep_profile": "nope"}, "sglang_benchmark_sweep_profile 'nope'"),
    ({"sharegpt_sha256": ""}, "sglang_benchmark_sharegpt_sha256 is empty"),
    ({"sharegpt_url": "", "sharegpt_src": ""}, "set sglang_benchmark_sharegpt_src"),
    ({"tokenizer": ""}, "sglang_benchmark_tokenizer is empty"),
    ({"custom": {"mine": {"dataset": "random-ids", "num_prompts": 8, "concurency": 4}}},
     "profile mine has unknown key 'concurency'"),
    ({"custom": {"mine": {"dataset": "imagenet", "num_prompts": 8}}}, "needs dataset one of"),
    ({"custom": {"mine": {"dataset": "random-ids"}}}, "needs num_prompts"),
    ({"custom": {"mine": {"dataset": "random-ids", "num_prompts": 8, "backend": "vllm"}}},
     "has backend 'vllm'"),
    ({"custom": {"mine": {"dataset": "random-ids", "num_prompts": 8, "request_rate": -1}}},
     "request_rate must be a positive number"),
])
def test_each_bad_setting_is_named(settings, change, needle):
    settings.update(change)
    problems = bench.sglang_benchmark_problems(settings)
    assert any(needle in p for p in problems), problems


def test_random_ids_needs_no_sharegpt(settings):
    settings.update(run=["mine"], sharegpt_sha256="", custom={"mine": {
        "dataset": "random-ids", "num_prompts": 8, "random_input_len": 1024,
        "random_output_len": 256, "random_range_ratio": 1.0}})
    assert bench.sglang_benchmark_problems(settings) == []


def test_runs_are_the_profiles_then_the_sweep(settings):
    settings.update(run=["latency"], sweep=[1, 32], custom={"throughput": {
        "dataset": "random-ids", "num_prompts": 5, "timeout": 99}})
    runs = bench.sglang_benchmark_runs(settings)
    assert [r["name"] for r in runs] == ["latency", "sweep-c1", "sweep-c32"]
    assert runs[0]["timeout"] == 3600 and runs[0]["concurrency"] is None
    assert runs[2]["profile"] == {"dataset": "random-ids", "num_prompts": 320,
                                  "max_concurrency": 32}
    assert runs[2]["timeout"] == 99 and runs[2]["profile_name"] == "throughput"


def _run(name="latency", num_prompts=10):
    return {"name": name, "profile_name": name, "concurrency": None, "timeout": 60,
            "profile": {"dataset": "sharegpt", "num_prompts": num_prompts}}


@pytest.mark.parametrize("outcome, error", [
    ({"finished": 1, "failed": False, "result": {"completed": 10}, "log": "/l"}, ""),
    ({"finished": 1, "failed": False, "result": {"completed": 7}, "log": "/l"},
     "latency: 3 of 10 requests failed (see /l)"),
    ({"finished": 1, "failed": True, "msg": "bench_serving timed out after 60 s"},
     "latency: bench_serving timed out after 60 s"),
    ({"finished": 0}, "latency: did not finish"),
])
def test_outcome_records_every_kind_of_failure(outcome, error):
    recorded = bench.sglang_benchmark_outcome(_run(), outcome)
    assert recorded["error"].startswith(error) if error else recorded["error"] == ""


def test_rows_put_the_reference_beside_ours_with_the_ratio():
    rows = {r["key"]: r for r in bench.sglang_benchmark_rows(
        {"output_throughput": 30.66, "median_ttft_ms": 316.0},
        {"figures": {"output_throughput": 61.32, "median_ttft_ms": 158}})}
    assert rows["output_throughput"]["ratio"] == pytest.approx(0.5)
    assert rows["output_throughput"]["better"] == "higher"
    assert rows["median_ttft_ms"]["ratio"] == pytest.approx(2.0)
    assert rows["median_ttft_ms"]["better"] == "lower"
    assert rows["p99_itl_ms"]["ours"] is None and rows["p99_itl_ms"]["ratio"] is None
    assert len(rows) == len(bench.METRICS)


def test_report_names_every_server_and_why_one_was_not_benchmarked():
    reference = {"latency": {"source": "published", "variants": ["instruct"],
                             "figures": {"output_throughput": 61.32}}}
    good = {"host": "a", "group": "a", "variant": "instruct", "url": "u", "runner": "a",
            "sglang_version": "0.5.6.post1", "reference": reference, "runs": [
                bench.sglang_benchmark_outcome(_run(), {
                    "finished": 1, "result": {"completed": 10, "output_throughput": 60.0,
                                              "duration": 12.0}})]}
    thinking = {**good, "host": "t", "variant": "thinking"}
    hostvars = {"a": {"sglang_benchmark_result": good},
                "t": {"sglang_benchmark_result": thinking},
                "b": {"sglang_verify_result": {"passed": False, "rank": 0}},
                "b1": {"sglang_verify_result": {"passed": True, "rank": 1}}}
    report = bench.sglang_benchmark_report(["a", "t", "b", "b1"], hostvars, "inv", "ts")
    hosts = {h["host"]: h for h in report["hosts"]}
    assert set(hosts) == {"a", "t", "b"}  # rank 1 is benchmarked through its rank 0
    assert not report["passed"] and "failed verification" in hosts["b"]["why"]
    run = hosts["a"]["runs"][0]
    assert run["passed"] and run["rows"][2]["ratio"] == pytest.approx(60 / 61.32)
    # The published figure is Kimi-K2-Instruct's: it is not held against Thinking.
    assert hosts["t"]["runs"][0]["reference"] is None
    markdown = bench.sglang_benchmark_markdown(run, hosts["a"])
    assert "| Output token throughput (tok/s) | 60.00 | 61.32 | 0.98 (higher is better) |" \
        in markdown


def test_argv_carries_the_profile_and_no_secret():
    argv = sglang_bench.bench_argv("/venv/bin/python", {
        "dataset": "sharegpt", "num_prompts": 10, "max_concurrency": 1, "seed": None},
        "http://127.0.0.1:30000/", "moonshotai/Kimi-K2-Instruct", "/tok", "/d.json", "/o.jsonl")
    assert argv[:3] == ["/venv/bin/python", "-m", "sglang.bench_serving"]
    pairs = dict(zip(argv[3::2], argv[4::2]))
    assert pairs == {"--base-url": "http://127.0.0.1:30000",
                     "--served-model-name": "moonshotai/Kimi-K2-Instruct",
                     "--tokenizer": "/tok", "--output-file": "/o.jsonl",
                     "--dataset-path": "/d.json", "--dataset-name": "sharegpt",
                     "--num-prompts": "10", "--max-concurrency": "1"}


def test_progress_is_the_last_tqdm_update():
    chunk = ("\r 10%|#         | 100/1000 [00:10<01:30, 10.0it/s]"
             "\r 43%|####3     | 430/1000 [00:43<00:57, 10.0it/s]")
    assert sglang_bench.parse_progress(chunk) == (430, 1000)
    assert sglang_bench.parse_progress("Starting warmup with 1 sequences...") is None


def test_result_keeps_the_figures_and_drops_the_server_arguments(tmp_path):
    out = tmp_path / "result.jsonl"
    line = {key: 1.0 for key in sglang_bench.RESULT_KEYS}
    line["server_info"] = {"version": "0.5.6.post1", "api_key": "sk-secret"}
    out.write_text(json.dumps({"completed": 1}) + "\n" + json.dumps(line) + "\n")
    result = sglang_bench.read_result(str(out))
    assert result["sglang_version"] == "0.5.6.post1"
    assert "sk-secret" not in json.dumps(result)
    assert set(result) == set(sglang_bench.RESULT_KEYS) | {"sglang_version"}


def test_a_run_past_its_timeout_is_killed(tmp_path):
    progress = sglang_bench.bench_progress(str(tmp_path), 5)
    run = sglang_bench.run_bench(
        [sys.executable, "-c", "import sys, time; sys.stderr.write('\\r 1/5 [00:01'); "
         "sys.stderr.flush(); time.sleep(60)"], {}, str(tmp_path), progress, timeout=1.5)
    assert run["timed_out"] and run["rc"] != 0 and run["seconds"] < 30
    state = json.loads((tmp_path / "progress.json").read_text())
    assert state["state"] == "failed" and state["done"] == 1 and state["total"] == 5
