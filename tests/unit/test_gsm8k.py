"""The GSM8K evaluator: SGLang's scoring and prompt, byte for byte, and its safeguards."""
import json

import pytest

from ansible_collections.kimi_k2.sglang.plugins.module_utils import gsm8k
from conftest import GSM8K_TEST
from sim_process import Sim


@pytest.mark.parametrize("text,value", [
    ("The answer is 72.", 72),
    ("She pays $1,234 in total", 1234),        # commas dropped
    ("3 apples and 5 pears make 8", 8),        # the last number wins
    ("It drops to -5 degrees", 5),             # no sign: \d+ only, like SGLang
    ("Each costs 2.50", 50),                   # decimals: the digits after the point
    ("no number here", gsm8k.INVALID),
    ("the code is 007", gsm8k.INVALID),         # ast.literal_eval rejects leading zeros
    ("#### 0", 0),
])
def test_answer_value_matches_sglang(text, value):
    assert gsm8k.answer_value(text) == value


def test_prompt_is_sglangs_byte_for_byte():
    lines = [{"question": f"q{i}?", "answer": f"a{i}\n#### {i}"} for i in range(7)]
    expected = "".join(f"Question: q{i}?\nAnswer: a{i}\n#### {i}\n\n" for i in range(5)) + \
        "Question: q6?\nAnswer:"
    assert gsm8k.few_shot_prompt(lines, 5, 6) == expected


def test_official_file_loads_and_a_wrong_one_is_refused(tmp_path):
    assert len(gsm8k.load_dataset(GSM8K_TEST)) == 1319
    wrong = tmp_path / "test.jsonl"
    wrong.write_text(GSM8K_TEST.read_text()[:-200])
    with pytest.raises(gsm8k.DatasetError, match="not the official GSM8K test set"):
        gsm8k.load_dataset(wrong)


def test_summary_uses_sglangs_definitions():
    records = [{"prediction": 1, "label": 1, "tokens": 10},
               {"prediction": gsm8k.INVALID, "label": 2, "tokens": 30},
               {"prediction": 3, "label": 4, "tokens": 20, "error": "x"}]
    summary = gsm8k.summarize(records, 2.0)
    assert summary["accuracy"] == pytest.approx(1 / 3)
    assert summary["invalid"] == pytest.approx(1 / 3)
    assert summary["output_throughput"] == 30.0 and summary["errors"] == 1


@pytest.fixture
def sim():
    s = Sim(["--model-path", "moonshotai/Kimi-K2-Instruct", "--api-key", "k"], api_key="k",
            env={"SGLANG_SIM_GSM8K": str(GSM8K_TEST), "SGLANG_SIM_ACCURACY": "0.7"})
    s.wait_ready()
    yield s
    s.stop()


def test_evaluate_scores_the_simulator_as_configured(sim):
    lines = gsm8k.load_dataset(GSM8K_TEST)
    both = [gsm8k.evaluate(f"http://127.0.0.1:{sim.port}", "k", lines, list(range(200)),
                           method=m, model="moonshotai/Kimi-K2-Instruct") for m in
            ("sglang", "chat")]
    for result in both:
        summary = gsm8k.summarize(result["records"], result["seconds"])
        assert 0.6 < summary["accuracy"] < 0.8 and summary["errors"] == 0
    assert [r["index"] for r in both[0]["records"]] == list(range(200))


def test_wrong_key_is_an_error_per_question_not_a_hang(sim):
    lines = gsm8k.load_dataset(GSM8K_TEST)
    result = gsm8k.evaluate(f"http://127.0.0.1:{sim.port}", "wrong", lines, [0, 1], retries=0)
    assert all("401" in r["error"] for r in result["records"])


def test_unreachable_endpoint_retries_then_records_the_error():
    lines = [{"question": "q", "answer": "#### 1"}]
    result = gsm8k.evaluate("http://127.0.0.1:9", "", lines, [0], retries=1,
                            request_timeout=1)
    [record] = result["records"]
    assert record["prediction"] == gsm8k.INVALID and record["error"]


def test_deadline_ends_the_run(sim):
    lines = gsm8k.load_dataset(GSM8K_TEST)
    result = gsm8k.evaluate(f"http://127.0.0.1:{sim.port}", "k", lines, list(range(50)),
                            concurrency=1, deadline=0)
    assert {r.get("error") for r in result["records"]} == {"deadline"}
