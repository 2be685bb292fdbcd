"""Our evaluator and SGLang's own few_shot_gsm8k score the same server identically."""
import os
import re
import subprocess
from pathlib import Path

import pytest

from ansible_collections.kimi_k2.sglang.plugins.module_utils import gsm8k

from runner import ROOT
from sim_process import Sim  # tests/unit, on the path (pytest.ini)

GSM8K_TEST = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
SGLANG_PYTHON = os.environ.get("SGLANG_PYTHON", str(ROOT / ".venv-sglang" / "bin" / "python"))


@pytest.mark.parametrize("accuracy", ["0.8", "0.95"])
def test_same_accuracy_as_sglangs_script(tmp_path, accuracy):
    if not Path(SGLANG_PYTHON).exists():
        pytest.fail(f"no SGLang venv at {SGLANG_PYTHON}: run `make conformance`")
    # SGLang's script sends no API key: the simulator runs without one here.
    sim = Sim(["--model-path", "moonshotai/Kimi-K2-Instruct"],
              env={"SGLANG_SIM_GSM8K": str(GSM8K_TEST), "SGLANG_SIM_ACCURACY": accuracy})
    try:
        sim.wait_ready()
        theirs = subprocess.run(
            [SGLANG_PYTHON, "-m", "sglang.test.few_shot_gsm8k", "--num-questions", "200",
             "--data-path", str(GSM8K_TEST), "--host", "http://127.0.0.1",
             "--port", str(sim.port)],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, check=True).stdout
        lines = gsm8k.load_dataset(GSM8K_TEST)
        ours = gsm8k.evaluate(f"http://127.0.0.1:{sim.port}", "", lines, list(range(200)))
    finally:
        sim.stop()
    summary = gsm8k.summarize(ours["records"], ours["seconds"])
    their_accuracy = float(re.search(r"Accuracy: ([\d.]+)", theirs).group(1))
    their_invalid = float(re.search(r"Invalid: ([\d.]+)", theirs).group(1))
    assert f"{summary['accuracy']:.3f}" == f"{their_accuracy:.3f}"
    assert f"{summary['invalid']:.3f}" == f"{their_invalid:.3f}"
    assert 0.5 < summary["accuracy"] < 1.0
