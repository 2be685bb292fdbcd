"""A host's verdict and the fleet report, from recorded smoke and GSM8K results."""
import pytest

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_verify as report

ENDPOINT = {"variant": "instruct", "group": "pair1", "rank": "0", "argv": ["--tp-size", "8"],
            "sglang_version": "0.5.6.post1"}


def slice_of(right, wrong, invalid=0, seconds=2.0):
    records = ([{"index": i, "label": 1, "prediction": 1, "tokens": 10} for i in range(right)]
               + [{"index": i, "label": 1, "prediction": 2, "tokens": 10} for i in range(wrong)]
               + [{"index": i, "label": 1, "prediction": -9999999, "tokens": 0}
                  for i in range(invalid)])
    return {"records": records, "seconds": seconds}


def facts(smoke=None, slices=None, threshold=0.93):
    return {"host": "h1", "endpoint": ENDPOINT, "url": "http://127.0.0.1:30000",
            "smoke": smoke if smoke is not None else [
                {"name": "health", "passed": True, "seconds": 0.1},
                {"name": "chat", "passed": True, "seconds": 1.0}],
            "gsm8k_slices": slices if slices is not None else [slice_of(96, 4)],
            "gsm8k_method": "sglang", "threshold": threshold}


def test_a_passing_host():
    verdict = report.sglang_verify_verdict(facts())
    assert verdict["passed"] and verdict["problems"] == [] and verdict["health"]
    assert verdict["gsm8k"]["accuracy"] == 0.96 and verdict["smoke_passed"] == 2
    assert verdict["rank"] == 0 and verdict["argv"] == ["--tp-size", "8"]


def test_slices_add_up_with_sglangs_definitions():
    verdict = report.sglang_verify_verdict(facts(slices=[slice_of(50, 0, seconds=1.0),
                                                         slice_of(40, 5, 5, seconds=3.0)]))
    gsm8k = verdict["gsm8k"]
    assert gsm8k["questions"] == 100 and gsm8k["accuracy"] == 0.9
    assert gsm8k["invalid"] == 0.05 and gsm8k["latency"] == 4.0
    assert gsm8k["output_throughput"] == 950 / 4.0


def test_below_threshold_names_the_figure_and_the_threshold():
    verdict = report.sglang_verify_verdict(facts(slices=[slice_of(50, 50)]))
    assert not verdict["passed"]
    assert verdict["problems"] == [
        "h1: GSM8K accuracy 0.500 is below the instruct threshold 0.930 (100 questions, "
        "method sglang, invalid 0.000)"]


def test_a_failed_check_says_what_was_expected_and_what_came():
    verdict = report.sglang_verify_verdict(facts(smoke=[
        {"name": "health", "passed": True},
        {"name": "chat", "passed": False, "expected": "36 in content", "got": "37"}]))
    assert verdict["problems"] == ["h1: smoke check chat failed: expected 36 in content, "
                                   "got 37"]


def test_no_smoke_result_fails_and_rank_one_needs_no_gsm8k():
    assert not report.sglang_verify_verdict(facts(smoke=[]))["passed"]
    rank1 = report.sglang_verify_verdict(facts(smoke=[{"name": "health", "passed": True}],
                                               slices=[]))
    assert rank1["passed"] and rank1["gsm8k"] is None


def test_fleet_fails_when_a_host_has_no_result():
    good = report.sglang_verify_verdict(facts())
    fleet = report.sglang_fleet_report(["h1", "h2"], {"h1": {"sglang_verify_result": good},
                                                      "h2": {}}, "production", "T")
    assert not fleet["passed"]
    assert fleet["hosts"][1]["problems"] == [
        "h2: no verify result (unreachable or failed earlier)"]
    gpu = {"host": "h1", "passed": True, "problems": []}
    fleet = report.sglang_fleet_report(
        ["h1"], {"h1": {"sglang_verify_result": good, "gpu_preflight_result": gpu}},
        "production", "T")
    assert fleet["passed"] and fleet["hosts"][0]["gpu"] == gpu
    with pytest.raises(report.AnsibleFilterError):
        report.sglang_fleet_report([], {}, "production", "T")
