#!/usr/bin/env python3
"""Draw the fleet overview dashboard as a PNG from a Prometheus, with the dashboard's own
queries (plugins/filter/sglang_monitoring.py, DASHBOARDS["sglang-fleet"]) through
Prometheus' HTTP API (query_range): the README's picture, and what an operator without a
Grafana can look at.

    tools/fleet_overview_png.py http://127.0.0.1:9090 fleet.png [--minutes 10]

Needs matplotlib (the controller venv has it) and the checkout on the path.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_monitoring as mon  # noqa: E402


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(metric: dict) -> str:
    shown = {k: v for k, v in metric.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"


def draw(prometheus: str, out: str, minutes: float = 10, rate_interval: str = "1m") -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    board = mon.sglang_monitoring_dashboards()["sglang-fleet"]
    queries = mon.sglang_monitoring_queries({"sglang-fleet": board}, rate_interval=rate_interval)
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, (end - start) / 300)
    rows = math.ceil(len(queries) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(12, 2.6 * rows), squeeze=False)
    drawn = 0
    for ax, (_, title, expr) in zip(axes.flat, queries):
        for series in query_range(prometheus, expr, start, end, step):
            xs = [(float(t) - end) / 60 for t, _ in series["values"]]
            ys = [float(v) for _, v in series["values"]]
            ax.plot(xs, ys, label=legend(series["metric"]))
            drawn += 1
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("minutes", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(queries):]:
        ax.set_visible(False)
    fig.suptitle(board["title"] + " (simulated fleet)")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return drawn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prometheus")
    parser.add_argument("out")
    parser.add_argument("--minutes", type=float, default=10)
    args = parser.parse_args()
    print(f"{draw(args.prometheus.rstrip('/'), args.out, args.minutes)} series drawn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
