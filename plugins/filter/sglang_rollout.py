"""Filters of the sglang_rollout role: which deployment groups change, in which batches,
whether the serving floor holds, and the rollout report.

Prefill/decode deployments: each group carries its pool (the prefill or decode pool's
inventory group, from sglang_pd_ops.sglang_pd_pool_of; "" for a monolithic server). The
floor, sglang_rollout_min_serving_groups, holds in every pool on its own: the monolithic
servers together, and each prefill and each decode pool, so a batch never takes a decode
pool below it however many other groups serve."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from ansible.errors import AnsibleFilterError


def sglang_rollout_groups(hosts: Sequence[str], hostvars: Mapping[str, Any],
                          pools: Mapping[str, Mapping[str, str]] | None = None
                          ) -> list[dict[str, Any]]:
    """Deployment groups in inventory order: name, hosts in rank order, rank-0 host and its
    cluster URL, whether any of its hosts has a change pending, and its pool and mode
    (pools: host -> {pool, mode}, PD hosts only; others are monolithic, pool "")."""
    groups: dict[str, dict[str, Any]] = {}
    for host in hosts:
        endpoint = hostvars[host]["sglang_service_endpoint"]
        where = (pools or {}).get(host) or {}
        group = groups.setdefault(endpoint["group"], {
            "name": endpoint["group"], "hosts": [], "pending": False, "leader": None, "url": None,
            "pool": where.get("pool", ""), "mode": where.get("mode", ""),
            "router": where.get("router", "")})
        group["hosts"].append(host)
        group["pending"] = group["pending"] or bool(hostvars[host].get("__sglang_rollout_pending"))
        if int(endpoint["rank"]) == 0:
            group["leader"], group["url"] = host, endpoint["cluster_url"]
    for group in groups.values():
        group["hosts"].sort(key=lambda h: int(hostvars[h]["sglang_service_endpoint"]["rank"]))
    return list(groups.values())


def _batch_size(size: Any, total: int) -> int:
    text = str(size).strip()
    try:
        if text.endswith("%"):
            return max(1, math.floor(total * float(text[:-1]) / 100))
        value = int(text)
    except ValueError:
        raise AnsibleFilterError("sglang_rollout_batch_size must be a count (1) or a percentage "
                                 "('25%%'), got %r" % (size,))
    if value < 1:
        raise AnsibleFilterError("sglang_rollout_batch_size must be at least 1, got %r" % (size,))
    return value


def sglang_rollout_plan(groups: list[dict[str, Any]], batch_size: Any, min_serving: Any,
                        order: Sequence[str]) -> dict[str, Any]:
    """Batches of the groups that change, in the stated order, and the problems that stop
    the rollout before it starts (each naming its variable)."""
    names = [g["name"] for g in groups]
    problems = ["sglang_rollout_order names %s, which is not a deployment group of this play "
                "(groups: %s)" % (n, ", ".join(names)) for n in order if n not in names]
    ordered = [g for n in order for g in groups if g["name"] == n] + \
        [g for g in groups if g["name"] not in order]
    pending = [g for g in ordered if g["pending"]]
    total = len(groups)
    size = _batch_size(batch_size, total) if pending else 1
    try:
        floor = int(min_serving)
    except (TypeError, ValueError):
        floor = -1
    # Groups per pool; a batch may take at most (pool size - floor) groups of one pool.
    pool_sizes: dict[str, int] = {}
    for group in groups:
        pool_sizes[group.get("pool", "")] = pool_sizes.get(group.get("pool", ""), 0) + 1
    room = {pool: count - max(floor, 0) for pool, count in pool_sizes.items()}
    if floor < 0:
        problems.append("sglang_rollout_min_serving_groups must be a whole number >= 0, got %r" % (min_serving,))
    elif pending and "" in room and any(not g.get("pool") for g in pending) \
            and room[""] < min(size, pool_sizes[""]):
        count = pool_sizes[""]
        problems.append("a batch of %d of %d groups would leave %d serving, below "
                        "sglang_rollout_min_serving_groups (%d): lower sglang_rollout_batch_size "
                        "or the floor" % (min(size, count), count, count - min(size, count), floor))
    if floor >= 0:
        for pool in sorted({g["pool"] for g in pending if g.get("pool")}):
            if room[pool] < 1:
                mode = next(g["mode"] for g in groups if g.get("pool") == pool)
                problems.append(
                    "the %s pool %s has %d server(s): rolling one would leave %d serving, below "
                    "sglang_rollout_min_serving_groups (%d), which every pool keeps: add a %s "
                    "server to %s or lower the floor" % (mode, pool, pool_sizes[pool],
                                                         pool_sizes[pool] - 1, floor, mode, pool))
    problems += ["group %s has no rank 0 in this play: include all its hosts" % g["name"]
                 for g in groups if g["leader"] is None]
    batches: list[list[dict[str, Any]]] = []
    taken: dict[str, int] = {}
    for group in pending:
        pool = group.get("pool", "")
        if not batches or len(batches[-1]) >= size or taken.get(pool, 0) >= max(room[pool], 1):
            batches.append([])
            taken = {}
        batches[-1].append(group)
        taken[pool] = taken.get(pool, 0) + 1
    return {"batches": batches, "unchanged": [g["name"] for g in ordered if not g["pending"]],
            "batch_size": size, "problems": problems}


def sglang_rollout_report(hosts: Sequence[str], hostvars: Mapping[str, Any]) -> dict[str, Any]:
    """Per group: rolled (passed), rolled back (with the check and figure that failed),
    not reached (after a failure) or unchanged."""
    planned = [h for h in hosts if "sglang_rollout_plan" in hostvars[h]]
    if not planned:
        raise AnsibleFilterError("no host holds a rollout plan: did plan.yml run?")
    plan = hostvars[planned[0]]["sglang_rollout_plan"]
    outcomes = {hostvars[h]["sglang_service_endpoint"]["group"]: hostvars[h]["__sglang_rollout_outcome"]
                for h in hosts if "__sglang_rollout_outcome" in hostvars[h]}
    rows = []
    for batch in plan["batches"]:
        for group in batch:
            outcome = outcomes.get(group["name"])
            if outcome is None:
                rows.append({"group": group["name"], "status": "not reached", "problems": []})
            else:
                rows.append({"group": group["name"], **outcome})
    rows += [{"group": name, "status": "unchanged", "problems": []} for name in plan["unchanged"]]
    failed = [r for r in rows if r["status"] in ("rolled back", "rollback failed")]
    return {"passed": all(r["status"] in ("rolled", "unchanged") for r in rows),
            "groups": rows, "failed_group": failed[0]["group"] if failed else None}


class FilterModule:
    def filters(self):
        return {
            "sglang_rollout_groups": sglang_rollout_groups,
            "sglang_rollout_plan": sglang_rollout_plan,
            "sglang_rollout_report": sglang_rollout_report,
        }
