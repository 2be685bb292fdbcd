#!/usr/bin/python
"""Ansible module: the benchmark report's plots, drawn on the controller."""
from __future__ import annotations

DOCUMENTATION = r"""
module: sglang_bench_plot
short_description: Draw the benchmark report's PNG plots
description:
  - C(benchmark.png) has one row per server and a column per profile run; each panel
    sets our throughput and latency figures beside the reference's, where there is one.
  - C(sweep-<host>.png), for a server with sweep runs, draws output throughput against
    median ITL and median TTFT, each point labelled with its concurrency - the curve to
    choose between the latency and throughput profiles with.
  - Needs matplotlib on the controller (requirements.txt). Runs on the controller only.
options:
  report: {description: The report from the sglang_benchmark_report filter., type: dict, required: true}
  dest: {description: Directory to write the PNG files in., type: path, required: true}
"""

EXAMPLES = r"""
- name: Plot the benchmark report next to its JSON
  kimi_k2.sglang.sglang_bench_plot:
    report: "{{ benchmark_report }}"
    dest: reports/production/20261205T120000Z-benchmark
  delegate_to: localhost
"""

RETURN = r"""
files:
  description: The PNG files written.
  type: list
  elements: str
  returned: success
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import matplotlib
    matplotlib.use("Agg")  # no display on a controller
    import matplotlib.pyplot as plt
    HAS_MATPLOTLIB, IMPORT_ERROR = True, None
except ImportError as err:
    HAS_MATPLOTLIB, IMPORT_ERROR = False, err

# (metric, label) pairs: throughput on the left axis group, latency on the right.
THROUGHPUT = (("output_throughput", "output tok/s"), ("request_throughput", "req/s"))
LATENCY = (("median_ttft_ms", "median TTFT ms"), ("median_itl_ms", "median ITL ms"),
           ("median_e2e_latency_ms", "median E2E ms"))


def _bars(ax, run, metrics, title):
    """Ours beside the reference; a log axis keeps req/s and tok/s readable together."""
    figures = (run.get("reference") or {}).get("figures") or {}
    labels = [label for _, label in metrics]
    ours = [run["metrics"].get(key) or 0.0 for key, _ in metrics]
    theirs = [figures.get(key) for key, _ in metrics]
    x = range(len(metrics))
    ax.bar([i - 0.2 for i in x], ours, width=0.4, label="ours")
    if any(t is not None for t in theirs):
        ax.bar([i + 0.2 for i in x], [t or 0 for t in theirs], width=0.4, label="reference")
    for i, value in enumerate(ours):
        ax.annotate(f"{value:,.1f}", (i - 0.2, value), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def plot_runs(report, dest):
    panels = [(host, run) for host in report["hosts"] for run in host["runs"]
              if run.get("metrics") and not run.get("concurrency")]
    if not panels:
        return []
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.2 * len(panels)), squeeze=False)
    for (host, run), (left, right) in zip(panels, axes):
        _bars(left, run, THROUGHPUT, f"{host['host']} {run['name']}: throughput")
        _bars(right, run, LATENCY, f"{host['host']} {run['name']}: latency")
    fig.tight_layout()
    path = os.path.join(dest, "benchmark.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_sweeps(report, dest):
    paths = []
    for host in report["hosts"]:
        points = sorted((run["concurrency"], run["metrics"]) for run in host["runs"]
                        if run.get("concurrency") and run.get("metrics"))
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        throughput = [m["output_throughput"] for _, m in points]
        for key, label in (("median_itl_ms", "median ITL"), ("median_ttft_ms", "median TTFT")):
            ax.plot(throughput, [m[key] for _, m in points], marker="o", label=label)
            for (concurrency, m), t in zip(points, throughput):
                ax.annotate(f"c={concurrency}", (t, m[key]), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
        ax.set_xlabel("output throughput (tok/s)")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{host['host']}: throughput against latency by concurrency")
        ax.legend()
        ax.grid(alpha=0.3)
        path = os.path.join(dest, f"sweep-{host['host']}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def main():
    module = AnsibleModule(
        argument_spec={"report": {"type": "dict", "required": True},
                       "dest": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    if not HAS_MATPLOTLIB:
        module.fail_json(msg=missing_required_lib("matplotlib") + " (pip install -r "
                         "requirements.txt on the controller)", exception=str(IMPORT_ERROR))
    if module.check_mode:
        module.exit_json(changed=False, files=[])
    report, dest = module.params["report"], module.params["dest"]
    module.exit_json(changed=False, files=plot_runs(report, dest) + plot_sweeps(report, dest))


if __name__ == "__main__":
    main()
