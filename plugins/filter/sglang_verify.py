"""Shape verify results: a host's verdict and the fleet report. Pure functions.

The GSM8K figures use plugins/module_utils/gsm8k.py's definitions (SGLang's), imported from the
repository so there is one definition of accuracy, invalid rate and throughput.
"""
from __future__ import annotations

from typing import Any

from ansible_collections.kimi_k2.sglang.plugins.module_utils.gsm8k import summarize

from ansible.errors import AnsibleFilterError


def _gsm8k(facts: dict[str, Any]) -> dict[str, Any] | None:
    slices = facts.get("gsm8k_slices") or []
    if not slices:
        return None
    records = [r for s in slices for r in s["records"]]
    summary = summarize(records, sum(float(s["seconds"]) for s in slices))
    threshold = float(facts["threshold"])
    return {**summary, "method": facts["gsm8k_method"], "threshold": threshold,
            "passed": summary["accuracy"] >= threshold, "records": records}


def sglang_verify_verdict(facts: dict[str, Any]) -> dict[str, Any]:
    """One host's result: every smoke check, the GSM8K figures, and why it failed."""
    endpoint = facts["endpoint"]
    smoke = list(facts.get("smoke") or [])
    gsm8k = _gsm8k(facts)
    problems = [f"{facts['host']}: smoke check {c['name']} failed: expected {c['expected']}, "
                f"got {c['got']}" for c in smoke if not c["passed"]]
    if not smoke:
        problems.append(f"{facts['host']}: no smoke check ran")
    # How the running command differs from the rendered one, and why (sglang_drift.py).
    problems += [f"{facts['host']}: {problem}" for problem in facts.get("running") or []]
    if gsm8k and not gsm8k["passed"]:
        problems.append(f"{facts['host']}: GSM8K accuracy {gsm8k['accuracy']:.3f} is below "
                        f"the {endpoint['variant']} threshold {gsm8k['threshold']:.3f} "
                        f"({gsm8k['questions']} questions, method {gsm8k['method']}, "
                        f"invalid {gsm8k['invalid']:.3f})")
    return {
        "host": facts["host"], "group": endpoint["group"], "variant": endpoint["variant"],
        "rank": int(endpoint["rank"]), "url": facts["url"], "argv": endpoint["argv"],
        "sglang_version": endpoint["sglang_version"],
        "health": next((c["passed"] for c in smoke if c["name"] == "health"), False),
        "smoke": smoke, "smoke_passed": sum(c["passed"] for c in smoke),
        "smoke_total": len(smoke), "gsm8k": gsm8k,
        "passed": not problems, "problems": problems,
    }


def sglang_fleet_report(hosts: list[str], hostvars: dict[str, Any], inventory: str,
                        timestamp: str) -> dict[str, Any]:
    """Every host's verdict; a host with none (unreachable, crashed) fails the fleet."""
    rows = []
    for host in hosts:
        result = hostvars[host].get("sglang_verify_result")
        if result is None:
            result = {"host": host, "passed": False, "health": False, "smoke": [],
                      "smoke_passed": 0, "smoke_total": 0, "gsm8k": None,
                      "problems": [f"{host}: no verify result (unreachable or failed earlier)"]}
        # The GPU preflight's verdict, when this run had one (serve.yml runs it first).
        rows.append({**result, "gpu": hostvars[host].get("gpu_preflight_result")})
    if not rows:
        raise AnsibleFilterError("no hosts to report on: is sglang_servers empty?")
    return {"inventory": inventory, "timestamp": timestamp,
            "passed": all(r["passed"] for r in rows), "hosts": rows}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"sglang_verify_verdict": sglang_verify_verdict,
                "sglang_fleet_report": sglang_fleet_report}
