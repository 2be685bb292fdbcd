"""playbooks/benchmark.yml runs SGLang's real bench_serving against the simulator.

The simulator's latency model is set to the published c=1 figures (TTFT 158 ms, ITL
15.76 ms), so what bench_serving measures can be checked against what that model implies.
The hosts are this machine (connection local); each server is a simulator process.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner import ROOT, play, task_results

from sim_process import Sim, free_port  # noqa: E402  (tests/unit, on the path: pytest.ini)

SHARED_GSM8K = ROOT.parent / "shared" / "data" / "gsm8k"
SGLANG_PYTHON = os.environ.get("SGLANG_PYTHON", str(ROOT / ".venv-sglang" / "bin" / "python"))
TTFT_MS, ITL_MS = 158.0, 15.76
API_KEY = "bench-test-key"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tokenizer trained here, and a ShareGPT-format file made of GSM8K train pairs."""
    if not Path(SGLANG_PYTHON).exists():
        pytest.fail(f"no SGLang venv at {SGLANG_PYTHON}: run `make conformance`")
    root = tmp_path_factory.mktemp("bench-assets")
    subprocess.run([SGLANG_PYTHON, str(Path(__file__).with_name("make_tokenizer.py")),
                    str(SHARED_GSM8K / "train.jsonl"), str(root / "tokenizer")],
                   check=True, capture_output=True, timeout=300)
    rows = [json.loads(line) for line in (SHARED_GSM8K / "train.jsonl").open()][:300]
    sharegpt = root / "sharegpt.json"
    sharegpt.write_text(json.dumps([
        {"id": f"gsm8k-train-{i}", "conversations": [
            {"from": "human", "value": row["question"]},
            {"from": "gpt", "value": row["answer"]}]} for i, row in enumerate(rows)]))
    return {"tokenizer": root / "tokenizer", "sharegpt": sharegpt,
            "sha256": hashlib.sha256(sharegpt.read_bytes()).hexdigest()}


def start_sim(accuracy="1.0"):
    sim = Sim(["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp", "8",
               "--tool-call-parser", "kimi_k2", "--enable-metrics", "--api-key", API_KEY],
              env={"SGLANG_SIM_GSM8K": str(SHARED_GSM8K / "test.jsonl"),
                   "SGLANG_SIM_ACCURACY": accuracy, "SGLANG_SIM_TTFT_MS": str(TTFT_MS),
                   "SGLANG_SIM_ITL_MS": str(ITL_MS), "SGLANG_SIM_ITL_PER_RUNNING_MS": "0.2"},
              api_key=API_KEY)
    sim.wait_ready()
    return sim


def inventory(tmp_path, assets, ports, **overrides):
    """One local 'server' per simulator port: the same playbooks, no containers."""
    inv = tmp_path / "bench-inventory"
    inv.mkdir()
    hosts = {f"bench-{i + 1}": {"sglang_service_port": port} for i, port in enumerate(ports)}
    variables = {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
        "sglang_version": "0.5.6.post1", "sglang_package": "sglang==0.5.6.post1",
        "sglang_service_variant": "instruct", "sglang_service_api_key": API_KEY,
        "sglang_verify_gsm8k_dataset_src": str(SHARED_GSM8K / "test.jsonl"),
        "sglang_verify_dataset_dir": str(tmp_path / "verify-data"),
        "sglang_verify_reports_dir": str(tmp_path / "reports"),
        "sglang_benchmark_python": SGLANG_PYTHON,
        "sglang_benchmark_tokenizer": str(assets["tokenizer"]),
        "sglang_benchmark_sharegpt_src": str(assets["sharegpt"]),
        "sglang_benchmark_sharegpt_sha256": assets["sha256"],
        "sglang_benchmark_dataset_dir": str(tmp_path / "bench-data"),
        "sglang_benchmark_work_dir": str(tmp_path / "bench-work"),
        "sglang_benchmark_reports_dir": str(tmp_path / "reports"),
        "sglang_benchmark_environment": {"HF_HUB_OFFLINE": "1"},
        "sglang_benchmark_progress_interval": 4,
        **overrides,
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": variables, "children": {"sglang_servers": {"hosts": hosts}}}}))
    return inv


def report(tmp_path):
    [path] = (tmp_path / "reports" / "bench-inventory").glob("*-benchmark/benchmark.json")
    return path.parent, json.loads(path.read_text())


def test_published_latency_profile_and_a_sweep(tmp_path, assets):
    sim = start_sim()
    try:
        run = play("playbooks/benchmark.yml", str(inventory(
            tmp_path, assets, [sim.port], sglang_benchmark_run=["latency"],
            sglang_benchmark_sweep=[1, 4], sglang_benchmark_sweep_prompts_per_concurrency=4,
        )), tmp_path)
    finally:
        sim.stop()
    assert run.rc == 0, run.stdout.read()
    out_dir, data = report(tmp_path)
    assert data["passed"]
    [host] = data["hosts"]
    runs = {r["name"]: r for r in host["runs"]}
    assert list(runs) == ["latency", "sweep-c1", "sweep-c4"]

    # What the latency model implies for 10 sequential requests of the measured lengths.
    m = runs["latency"]["metrics"]
    assert m["completed"] == 10
    n, total_out = m["completed"], m["total_output_tokens"]
    busy_s = (n * TTFT_MS + (total_out - n) * ITL_MS) / 1000
    implied = {"median_ttft_ms": TTFT_MS, "median_itl_ms": ITL_MS, "mean_tpot_ms": ITL_MS,
               "output_throughput": total_out / busy_s, "request_throughput": n / busy_s,
               "mean_e2e_latency_ms": busy_s * 1000 / n}
    for key, expected in implied.items():
        assert abs(m[key] / expected - 1) < 0.10, (key, m[key], expected)

    # The published figures sit beside ours, with the ratio.
    rows = {r["key"]: r for r in runs["latency"]["rows"]}
    assert rows["output_throughput"]["reference"] == 61.32
    assert rows["median_itl_ms"]["ratio"] == pytest.approx(m["median_itl_ms"] / 15.76)
    assert rows["p99_e2e_latency_ms"]["reference"] is None

    # A higher concurrency gives more throughput in the sweep.
    assert (runs["sweep-c4"]["metrics"]["output_throughput"]
            > 2 * runs["sweep-c1"]["metrics"]["output_throughput"])

    for name in runs:
        assert (out_dir / f"bench-1-{name}.json").is_file()
        assert "| Median ITL (ms) |" in (out_dir / f"bench-1-{name}.md").read_text()
    for png in ("benchmark.png", "sweep-bench-1.png"):
        assert (out_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "61.32" in (out_dir / "benchmark.md").read_text()

    # Progress showed while the runs went, and the API key never reached a log or report.
    progress = [e for e in run.events
                if e.get("event_data", {}).get("task") == "progress | Show the progress"
                and e["event"] == "runner_on_ok"]
    assert any("/10 requests" in e["event_data"]["res"]["msg"] for e in progress)
    assert API_KEY not in json.dumps(data)
    for log in (tmp_path / "bench-work").rglob("bench.log"):
        assert API_KEY not in log.read_text()


def test_failed_runs_and_unverified_servers_are_reported(tmp_path, assets):
    good, bad = start_sim(), start_sim(accuracy="0.3")
    try:
        run = play("playbooks/benchmark.yml", str(inventory(
            tmp_path, assets, [good.port, bad.port], sglang_benchmark_run=["quick", "too-slow"],
            sglang_benchmark_custom_profiles={
                "quick": {"dataset": "random-ids", "num_prompts": 4, "max_concurrency": 2,
                          "random_input_len": 64, "random_output_len": 16,
                          "random_range_ratio": 1.0},
                "too-slow": {"dataset": "sharegpt", "num_prompts": 50, "max_concurrency": 1,
                             "timeout": 20}},
        )), tmp_path)
    finally:
        good.stop()
        bad.stop()
    assert run.rc != 0
    _, data = report(tmp_path)
    hosts = {h["host"]: h for h in data["hosts"]}
    assert not hosts["bench-2"]["benchmarked"]
    assert "failed verification" in hosts["bench-2"]["why"]
    runs = {r["name"]: r for r in hosts["bench-1"]["runs"]}
    assert runs["quick"]["passed"] and runs["quick"]["metrics"]["completed"] == 4
    assert not runs["too-slow"]["passed"]
    assert "timed out after 20 s" in runs["too-slow"]["error"]
    failed = task_results(run, "runner_on_failed", "Every run of this server completed")
    assert "too-slow" in json.dumps(failed["bench-1"])


def test_bad_settings_fail_before_any_host_is_touched(tmp_path, assets):
    run = play("playbooks/benchmark.yml", str(inventory(
        tmp_path, assets, [1], sglang_benchmark_sharegpt_sha256="",
        sglang_benchmark_run=["latency", "nonesuch"])), tmp_path)
    assert run.rc != 0
    failed = json.dumps(task_results(run, "runner_on_failed", "Check the profiles, the sweep "
                                     "and the dataset settings"))
    assert "nonesuch" in failed
    assert not (tmp_path / "verify-data").exists()


def test_the_blog_workload_through_a_pd_router_reports_per_node_figures(tmp_path, assets):
    """Issue 17: a prefill and a decode simulator behind the real sglang-router in PD mode.
    benchmark.yml leaves both halves to the router (they generate only as a pair), runs
    the blog's workload (2000 in / 100 out, fewer prompts) through it from the prefill
    host, and reports input tok/s per prefill node and output tok/s per decode node beside
    the blog's figures."""
    gateway = os.environ.get("SGLANG_ROUTER_PYTHON", str(ROOT / "build/router-venv/bin/python"))
    if not Path(gateway).exists():
        pytest.fail(f"no sglang-router venv at {gateway}: run `make unit` (it builds it)")
    env = {"SGLANG_SIM_GSM8K": str(SHARED_GSM8K / "test.jsonl"), "SGLANG_SIM_ACCURACY": "1.0",
           "SGLANG_SIM_TTFT_MS": str(TTFT_MS), "SGLANG_SIM_ITL_MS": str(ITL_MS)}
    base = ["--model-path", "moonshotai/Kimi-K2-Instruct", "--tp", "8", "--tool-call-parser",
            "kimi_k2", "--enable-metrics", "--api-key", API_KEY, "--disaggregation-ib-device",
            "mlx5_0"]
    decode = Sim([*base, "--disaggregation-mode", "decode"], env=env, api_key=API_KEY)
    bootstrap = free_port()
    while abs(bootstrap - decode.port) < 1100:  # clear of the ports SGLang derives
        bootstrap = free_port()
    prefill = Sim([*base, "--disaggregation-mode", "prefill", "--disaggregation-bootstrap-port",
                   str(bootstrap)], env=env, api_key=API_KEY)
    while abs(bootstrap - prefill.port) < 1100:
        prefill.stop()
        prefill = Sim([*base, "--disaggregation-mode", "prefill",
                       "--disaggregation-bootstrap-port", str(bootstrap)], env=env,
                      api_key=API_KEY)
    router_port = free_port()
    log = (tmp_path / "gateway.log").open("wb")
    router = subprocess.Popen(
        [gateway, "-m", "sglang_router.launch_router", "--pd-disaggregation",
         "--prefill", f"http://127.0.0.1:{prefill.port}", str(bootstrap),
         "--decode", f"http://127.0.0.1:{decode.port}", "--api-key", API_KEY,
         "--host", "127.0.0.1", "--port", str(router_port),
         "--prometheus-port", str(free_port())], stdout=log, stderr=subprocess.STDOUT)
    try:
        prefill.wait_ready()
        decode.wait_ready()
        inv = inventory(tmp_path, assets, [], sglang_benchmark_run=["pd-blog"],
                        sglang_verify_gsm8k_questions=20, ansible_host="127.0.0.1",
                        sglang_service_disaggregation_ib_devices=["mlx5_0"],
                        sglang_benchmark_custom_profiles={"pd-blog": {
                            "dataset": "random-ids", "random_input_len": 2000,
                            "random_output_len": 100, "random_range_ratio": 1.0,
                            "num_prompts": 16, "max_concurrency": 8}})
        listing = yaml.safe_load((inv / "hosts.yml").read_text())
        listing["all"]["children"] = {
            "sglang_servers": {"children": {
                "pd_prefill": {"hosts": {"pd-p": {"sglang_service_port": prefill.port}},
                               "vars": {"sglang_service_disaggregation_mode": "prefill",
                                        "sglang_service_disaggregation_bootstrap_port":
                                            bootstrap}},
                "pd_decode": {"hosts": {"pd-d": {"sglang_service_port": decode.port}},
                              "vars": {"sglang_service_disaggregation_mode": "decode"}}}},
            "sglang_routers": {"hosts": {"pd-r": {
                "sglang_router_port": router_port, "sglang_router_api_key": API_KEY,
                "sglang_router_server_group": "", "sglang_router_prefill_group": "pd_prefill",
                "sglang_router_decode_group": "pd_decode"}}}}
        (inv / "hosts.yml").write_text(yaml.safe_dump(listing))
        run = play("playbooks/benchmark.yml", str(inv), tmp_path)
    finally:
        router.terminate()
        router.wait(10)
        prefill.stop()
        decode.stop()
    assert run.rc == 0, (tmp_path / "gateway.log").read_text()[-2000:]
    out_dir, data = report(tmp_path)
    hosts = {h["host"]: h for h in data["hosts"]}
    assert data["passed"] and set(hosts) == {"pd-p", "pd-d", "pd-r"}
    for half in ("pd-p", "pd-d"):
        assert not hosts[half]["benchmarked"] and "through its PD router" in hosts[half]["why"]
    [run_report] = hosts["pd-r"]["runs"]
    metrics = run_report["metrics"]
    assert metrics["completed"] == 16 and hosts["pd-r"]["runner"] == "pd-p"
    assert metrics["total_input_tokens"] == 16 * 2000
    rows = {r["key"]: r for r in run_report["pd"]["rows"]}
    # One node per pool: per node is the whole figure, beside the blog's.
    assert rows["prefill_input_per_node"]["ours"] == pytest.approx(metrics["input_throughput"])
    assert rows["decode_output_per_node"]["ours"] == pytest.approx(metrics["output_throughput"])
    assert rows["prefill_input_per_node"]["reference"] == 56000
    assert rows["decode_output_per_node"]["ratio"] == pytest.approx(
        metrics["output_throughput"] / 24000)
    text = (out_dir / "pd-r-pd-blog.md").read_text()
    assert "| Prefill: input tok/s per prefill node |" in text and "24,000.00" in text
