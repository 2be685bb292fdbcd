"""GSM8K accuracy of an SGLang endpoint: stdlib only, runs on the managed host.

Method "sglang" reproduces `python -m sglang.test.few_shot_gsm8k` (0.5.6.post1) exactly:
the first k test lines as shots, the raw prompt to /generate, temperature 0, 512 new
tokens, its stop strings, and its scoring (commas dropped, last run of digits through
ast.literal_eval, INVALID otherwise), so the figure is comparable with the published
0.960. Method "chat" asks /v1/chat/completions the bare question and scores `content`.
Unlike SGLang's script it sends the API key, accepts a URL, and cannot hang forever.
"""
from __future__ import annotations

import ast
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.kimi_k2.sglang.plugins.module_utils.sglang_client import Endpoint, TransportError
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sha256 import sha256_bytes

INVALID = -9999999
STOP = ["Question", "Assistant:", "<|separator|>"]
OFFICIAL_SHA256 = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"


class DatasetError(Exception):
    pass


def load_dataset(path, sha256=OFFICIAL_SHA256):
    with open(path, "rb") as handle:
        raw = handle.read()
    digest = sha256_bytes(raw)
    if sha256 and digest != sha256:
        raise DatasetError(f"{path} has sha256 {digest}, expected {sha256}: not the official "
                           "GSM8K test set; stage the right file or let it download")
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def answer_value(text):
    """SGLang's get_answer_value: last run of digits, commas removed; INVALID if none."""
    numbers = re.findall(r"\d+", text.replace(",", ""))
    if not numbers:
        return INVALID
    try:
        return ast.literal_eval(numbers[-1])
    except SyntaxError:  # e.g. "007": leading zeros are not a Python literal
        return INVALID


def one_example(lines, i, include_answer):
    text = "Question: " + lines[i]["question"] + "\nAnswer:"
    if include_answer:
        text += " " + lines[i]["answer"]
    return text


def few_shot_prompt(lines, shots, i):
    return "".join(one_example(lines, k, True) + "\n\n" for k in range(shots)) + \
        one_example(lines, i, False)


def ask(endpoint, method, lines, shots, i, settings):
    """One question -> (text, completion tokens)."""
    if method == "sglang":
        body = {"text": few_shot_prompt(lines, shots, i), "sampling_params": {
            "max_new_tokens": settings["max_new_tokens"], "temperature": 0, "stop": STOP}}
        answer = endpoint.call_with_retries("/generate", body, settings["retries"])
        if answer.status != 200:
            raise TransportError(f"/generate HTTP {answer.status}: {answer.text()}")
        out = answer.json()
        return out["text"], out["meta_info"]["completion_tokens"]
    body = {"model": settings["model"], "temperature": 0,
            "max_tokens": settings["max_new_tokens"],
            "messages": [{"role": "user", "content": lines[i]["question"]}]}
    answer = endpoint.call_with_retries("/v1/chat/completions", body, settings["retries"])
    if answer.status != 200:
        raise TransportError(f"/v1/chat/completions HTTP {answer.status}: {answer.text()}")
    out = answer.json()
    return out["choices"][0]["message"].get("content") or "", out["usage"]["completion_tokens"]


def evaluate(base_url, api_key, lines, indices, method="sglang", shots=5, concurrency=128,
             max_new_tokens=512, request_timeout=600, retries=2, deadline=3600, model=""):
    """Ask the questions at `indices`; return per-question records and wall time.

    A question that fails after its retries, or is not done by the deadline, is recorded
    with an error and scored INVALID, so the run always ends.
    """
    endpoint = Endpoint(base_url, api_key, request_timeout)
    settings = {"max_new_tokens": max_new_tokens, "retries": retries, "model": model}
    stop_at = time.monotonic() + deadline
    expired = threading.Event()

    def one(i):
        record = {"index": i, "label": answer_value(lines[i]["answer"])}
        if expired.is_set() or time.monotonic() > stop_at:
            expired.set()
            record.update(prediction=INVALID, tokens=0, seconds=0.0, error="deadline")
            return record
        start = time.monotonic()
        try:
            text, tokens = ask(endpoint, method, lines, shots, i, settings)
            record.update(prediction=answer_value(text), tokens=tokens)
        except (TransportError, ValueError, KeyError, IndexError) as err:
            record.update(prediction=INVALID, tokens=0, error=str(err)[:200])
        record["seconds"] = round(time.monotonic() - start, 3)
        return record

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        records = list(pool.map(one, indices))
    return {"records": records, "seconds": time.monotonic() - start}


def summarize(records, seconds):
    """SGLang's figures: accuracy, invalid rate, latency (s), output throughput (tok/s)."""
    n = len(records) or 1
    tokens = sum(r["tokens"] for r in records)
    return {
        "questions": len(records),
        "accuracy": sum(r["prediction"] == r["label"] for r in records) / n,
        "invalid": sum(r["prediction"] == INVALID for r in records) / n,
        "latency": seconds,
        "output_throughput": tokens / seconds if seconds else 0.0,
        "errors": sum(1 for r in records if r.get("error")),
    }
