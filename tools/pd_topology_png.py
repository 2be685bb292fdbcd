#!/usr/bin/env python3
"""Draw an inventory's prefill/decode (PD) deployments as a PNG: each PD router, its
prefill and decode pools, their servers (deployment groups) and nodes, the parallel layout
each pool's variables give, and the paths a request takes. The README's picture
(docs/pd-topology.png) is the example production inventory's:

    tools/pd_topology_png.py inventories/production docs/pd-topology.png

The deployments come from plugins/filter/sglang_pd_ops.py (what plan.yml and status.yml
print), the inventory from `ansible-inventory --list` (connects to nothing). Needs
matplotlib (the controller venv has it) and the checkout on the path.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collections"))

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_pd_ops as pd  # noqa: E402

# Drawn as exercised on CPU (the simulator behind the real gateway, molecule/pd) or only
# on the real fabric (RDMA KV transfer, DeepEP, EPLB).
CPU, FABRIC = "#2e7d32", "#e65100"


def load(inventory: str) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, Any]]:
    """hostvars, groups (hosts, children included) and the raw listing."""
    listing = json.loads(subprocess.run(["ansible-inventory", "-i", inventory, "--list"],
                                        check=True, capture_output=True, text=True).stdout)
    hostvars = {h: dict(v) for h, v in listing["_meta"]["hostvars"].items()}

    def hosts(group: str) -> list[str]:
        entry = listing.get(group, {})
        found = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            found += [h for h in hosts(child) if h not in found]
        return found

    groups = {name: hosts(name) for name in listing if name != "_meta"}
    # A pool's child groups are its servers: name each host's (the inventory's own value
    # may be a template that only Ansible resolves).
    for name, entry in listing.items():
        for child in entry.get("children", []) if isinstance(entry, dict) else []:
            for host in listing.get(child, {}).get("hosts", []):
                hostvars.setdefault(host, {})["sglang_service_deployment_group"] = child
    return hostvars, groups, listing


def layout(hostvars: dict[str, Any], host: str) -> str:
    v = hostvars.get(host, {})
    parts = [f"{k} {v[f'sglang_service_{k}_size']}" for k in ("tp", "dp", "ep")
             if isinstance(v.get(f"sglang_service_{k}_size"), int)]
    if v.get("sglang_service_moe_a2a_backend") == "deepep":
        parts.append(f"DeepEP {v.get('sglang_service_deepep_mode', 'auto')}")
    if v.get("sglang_service_eplb_enabled") is True:
        parts.append(f"EPLB +{v.get('sglang_service_ep_num_redundant_experts', 0)}")
    return ", ".join(parts)


def draw(deployments: list[dict[str, Any]], hostvars: dict[str, Any], out: str,
         title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    width = max(8.0, max(len(d["prefill"]["hosts"]) + len(d["decode"]["hosts"])
                         for d in deployments) * 1.7 + 4.4)
    fig, ax = plt.subplots(figsize=(width, 5.4 * len(deployments)))
    ax.set_xlim(0, width)
    ax.set_ylim(0, 5.4 * len(deployments))
    ax.axis("off")

    def box(x, y, w, h, text, color, size=9, style="-", fill="white"):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    fc=fill, ec=color, lw=1.6, ls=style))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(a, b, text, color, style="-", rad=0.0):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color=color,
                                     lw=1.4, ls=style, connectionstyle=f"arc3,rad={rad}"))
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.18, text, ha="center", fontsize=7.5,
                color=color)

    for i, deployment in enumerate(reversed(deployments)):
        base = i * 5.4
        router = deployment["router"]
        rx = width / 2 - 1.6
        box(rx, base + 4.2, 3.2, 0.7, f"router {router}\nsglang-router / smg --pd-disaggregation",
            CPU, fill="#e8f5e9")
        ax.text(rx - 0.2, base + 4.55, "clients\n(OpenAI API) →", ha="right", va="center",
                fontsize=8)
        pools_x = {"prefill": 0.4, "decode": 0.4 + (len(deployment["prefill"]["hosts"]) * 1.7
                                                      + 2.8)}
        centres = {}
        for mode in pd.MODES:
            pool = deployment[mode]
            x = pools_x[mode]
            w = max(2.6, len(pool["hosts"]) * 1.7 + 0.2)
            first = pool["hosts"][0] if pool["hosts"] else ""
            box(x, base + 0.5, w, 2.7, "", CPU)
            ax.text(x + w / 2, base + 2.95, f"{mode} pool {pool['group']}", ha="center",
                    fontsize=10, weight="bold")
            ax.text(x + w / 2, base + 2.62, layout(hostvars, first), ha="center", fontsize=8,
                    color=FABRIC)
            sx = x + 0.1
            for server in pool["servers"]:
                sw = len(server["hosts"]) * 1.7
                box(sx, base + 0.65, sw - 0.1, 1.75, "", "#546e7a", style="--")
                ax.text(sx + (sw - 0.1) / 2, base + 2.2, f"server {server['name']}",
                        ha="center", fontsize=8)
                for n, host in enumerate(server["hosts"]):
                    label = f"{host}\nnode {n}\n8x H200"
                    if mode == "prefill" and n == 0:
                        port = hostvars.get(host, {}).get(
                            "sglang_service_disaggregation_bootstrap_port", 8998)
                        label += f"\nbootstrap :{port}"
                    box(sx + 0.1 + n * 1.7, base + 0.75, 1.4, 1.25, label, "#37474f", size=7)
                sx += sw
            centres[mode] = (x + w / 2, base + 3.2)
            pools_x[mode] = (x, w)
        arrow((rx + 0.8, base + 4.2), centres["prefill"],
              "request + bootstrap room (HTTP)", CPU)
        arrow((rx + 2.4, base + 4.2), centres["decode"],
              "same request; decode streams the answer", CPU)
        px, pw = pools_x["prefill"]
        dx, _ = pools_x["decode"]
        backend = hostvars.get(deployment["prefill"]["hosts"][0], {}).get(
            "sglang_service_disaggregation_transfer_backend", "mooncake")
        arrow((px + pw, base + 1.4), (dx, base + 1.4),
              f"KV cache over RDMA\n({backend}, per-host IB devices)", FABRIC, style="--")
    ax.text(0.1, 0.1, f"green: exercised on CPU in the test bed (simulator halves behind the real "
            f"gateway, molecule/pd);  orange dashed: only on the real fabric (RDMA, DeepEP, "
            f"EPLB)", fontsize=7.5, color="#424242")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory")
    parser.add_argument("out")
    args = parser.parse_args()
    hostvars, groups, _ = load(args.inventory)
    deployments = pd.sglang_pd_deployments(groups.get("sglang_routers", []), hostvars, groups)
    if not deployments:
        print(f"{args.inventory}: no prefill/decode deployment", file=sys.stderr)
        return 1
    for line in pd.sglang_pd_topology(deployments):
        print(line)
    draw(deployments, hostvars, args.out,
         f"Prefill/decode deployment(s) of {Path(args.inventory).name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
