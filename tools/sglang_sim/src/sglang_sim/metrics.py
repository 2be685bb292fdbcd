"""SGLang 0.5.6.post1's /metrics, simulated: the names, types, labels and default buckets
of the series its collectors register (python/sglang/srt/metrics/collector.py of that
version: SchedulerMetricsCollector and TokenizerMetricsCollector), with values from the
simulator's requests and latency model. tests/unit/test_sim_metrics.py compares METRICS
with the pinned SGLang's own code.

Labels, as SGLang sets them: the scheduler's gauges carry model_name, engine_type
("unified"), tp_rank and pp_rank, plus dp_rank with dp-attention (scheduler_metrics_mixin
.init_metrics); only the schedulers of attention-TP rank 0 report unless
--enable-metrics-for-all-schedulers is given (scheduler.current_scheduler_metrics_enabled),
so without it a dp-attention server reports one scheduler's view. The tokenizer's
counters and histograms carry model_name only (tokenizer_manager). The text is
prometheus_client's exposition format (counters named with their _total suffix, values
as Python floats); the created timestamps are left out, as in SGLang's multiprocess mode.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

# Default buckets of SGLang 0.5.6.post1's TokenizerMetricsCollector.
TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
ITL_BUCKETS = (0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040,
               0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000,
               8.000)
E2E_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400,
               600, 1200, 1800, 2400)

# name -> (type, help, source): "scheduler" series are per scheduler, "tokenizer" ones
# per server. The subset the simulator can give a meaning to.
METRICS: dict[str, tuple[str, str, str]] = {
    "sglang:num_running_reqs": ("gauge", "The number of running requests.", "scheduler"),
    "sglang:num_used_tokens": ("gauge", "The number of used tokens.", "scheduler"),
    "sglang:token_usage": ("gauge", "The token usage.", "scheduler"),
    "sglang:gen_throughput": ("gauge", "The generation throughput (token/s).", "scheduler"),
    "sglang:num_queue_reqs": ("gauge", "The number of requests in the waiting queue.", "scheduler"),
    "sglang:cache_hit_rate": ("gauge", "The prefix cache hit rate.", "scheduler"),
    "sglang:max_total_num_tokens": ("gauge", "Maximum total number of tokens in the KV cache pool.",
                                    "scheduler"),
    "sglang:prompt_tokens_total": ("counter", "Number of prefill tokens processed.", "tokenizer"),
    "sglang:generation_tokens_total": ("counter", "Number of generation tokens processed.",
                                       "tokenizer"),
    "sglang:cached_tokens_total": ("counter", "Number of cached prompt tokens.", "tokenizer"),
    "sglang:num_requests_total": ("counter", "Number of requests processed.", "tokenizer"),
    "sglang:num_aborted_requests_total": ("counter", "Number of requests aborted.", "tokenizer"),
    "sglang:time_to_first_token_seconds": ("histogram",
                                           "Histogram of time to first token in seconds.",
                                           "tokenizer"),
    "sglang:inter_token_latency_seconds": ("histogram",
                                           "Histogram of inter-token latency in seconds.",
                                           "tokenizer"),
    "sglang:e2e_request_latency_seconds": ("histogram",
                                           "Histogram of End-to-end request latency in seconds",
                                           "tokenizer"),
}
BUCKETS = {"sglang:time_to_first_token_seconds": TTFT_BUCKETS,
           "sglang:inter_token_latency_seconds": ITL_BUCKETS,
           "sglang:e2e_request_latency_seconds": E2E_BUCKETS}
# The KV cache pool the simulator pretends to have (tokens).
POOL_TOKENS = 400_000


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float, times: int = 1) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += times
        self.total += value * times
        self.count += times


@dataclass
class Metrics:
    """What the simulator measured: counters, histograms, the last throughput."""
    counters: dict[str, float] = field(default_factory=lambda: {
        name: 0.0 for name, (kind, _, _) in METRICS.items() if kind == "counter"})
    histograms: dict[str, Histogram] = field(default_factory=lambda: {
        name: Histogram(buckets) for name, buckets in BUCKETS.items()})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, prompt_tokens: int, completion_tokens: int, ttft: float,
                itl: float) -> None:
        """One finished request, timed by the latency model (the GPU's clock)."""
        with self.lock:
            self.counters["sglang:prompt_tokens_total"] += prompt_tokens
            self.counters["sglang:generation_tokens_total"] += completion_tokens
            self.counters["sglang:num_requests_total"] += 1
            self.histograms["sglang:time_to_first_token_seconds"].observe(ttft)
            if completion_tokens > 1:
                self.histograms["sglang:inter_token_latency_seconds"].observe(
                    itl, completion_tokens - 1)
            self.histograms["sglang:e2e_request_latency_seconds"].observe(
                ttft + itl * max(completion_tokens - 1, 0))


def _float(value: float) -> str:
    return repr(float(value)) if value == value else "NaN"


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _schedulers(args: Any) -> list[dict[str, str]]:
    model = args.served_model_name or args.model_path
    tp = int(getattr(args, "tensor_parallel_size", 1) or 1)
    dp = int(getattr(args, "data_parallel_size", 1) or 1)
    dp_attention = bool(getattr(args, "enable_dp_attention", False))
    every = bool(getattr(args, "enable_metrics_for_all_schedulers", False))
    attn_tp = max(tp // dp, 1) if dp_attention else tp
    out = []
    for rank in range(tp):
        if rank % attn_tp and not every:
            continue
        labels = {"model_name": model, "engine_type": "unified", "tp_rank": str(rank),
                  "pp_rank": "0"}
        if dp_attention:
            labels["dp_rank"] = str(rank // attn_tp)
        out.append(labels)
    return out


def render(args: Any, metrics: Metrics, running: int, queued: int = 0) -> str:
    """The /metrics text of rank 0. running: requests in flight now."""
    schedulers = _schedulers(args)
    tokenizer = _labels({"model_name": args.served_model_name or args.model_path})
    used = min(running * 1000, POOL_TOKENS)
    gauges = {"sglang:num_running_reqs": running, "sglang:num_used_tokens": used,
              "sglang:token_usage": used / POOL_TOKENS, "sglang:gen_throughput": 0.0,
              "sglang:num_queue_reqs": queued, "sglang:cache_hit_rate": 0.0,
              "sglang:max_total_num_tokens": POOL_TOKENS}
    lines: list[str] = []
    with metrics.lock:
        for name, (kind, doc, _) in METRICS.items():
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]
            if kind == "gauge":
                share = len(schedulers)
                for labels in schedulers:
                    value = gauges[name]
                    if name in ("sglang:num_running_reqs", "sglang:num_used_tokens",
                                "sglang:num_queue_reqs") and share > 1:
                        value = value / share
                    lines.append(f"{name}{_labels(labels)} {_float(value)}")
            elif kind == "counter":
                lines.append(f"{name}{tokenizer} {_float(metrics.counters[name])}")
            else:
                hist = metrics.histograms[name]
                label = tokenizer[1:-1]
                for bound, count in zip(hist.buckets, hist.counts):
                    lines.append(f'{name}_bucket{{{label},le="{_float(bound)}"}} {_float(count)}')
                lines.append(f'{name}_bucket{{{label},le="+Inf"}} {_float(hist.count)}')
                lines.append(f"{name}_count{tokenizer} {_float(hist.count)}")
                lines.append(f"{name}_sum{tokenizer} {_float(hist.total)}")
    return "\n".join(lines) + "\n"
