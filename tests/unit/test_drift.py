"""plugins/filter/sglang_drift.py: does the SGLang server run what the role renders? A
"yes" that should be "no" leaves a host on old arguments with every run reporting
changed=0 (issue 14, faults 1 and 8), so each kind of difference is checked to say no."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_drift as flt
from ansible_collections.kimi_k2.sglang.plugins.filter.sglang_verify import sglang_verify_verdict

UNIT = "sglang.service"
VAR = "KIMI_K2_SERVICE_FINGERPRINT"
ARGV = ["--model-path", "moonshotai/Kimi-K2-Thinking", "--tp-size", "8", "--reasoning-parser",
        "kimi_k2", "--trust-remote-code", "--config", "/etc/sglang/secrets.yaml"]
LAUNCH = ["/opt/sglang/bin/python", "/usr/local/sbin/sglang-launch", "--secrets-file",
          "/etc/sglang/secrets.yaml", "--", "-m", "sglang.launch_server"]
DROPIN = "/etc/systemd/system/sglang.service.d/x.conf"


def state(**unit):
    found = {"LoadState": "loaded", "UnitFileState": "enabled", "ActiveState": "active",
             "NeedDaemonReload": "no", "MainPID": "7", "dropins": {},
             "cmdline": LAUNCH + ARGV, "environ": {VAR: "a" * 64}}
    found.update(unit)
    return {"units": {UNIT: found}}


def drift(reading, managed=()):
    return flt.sglang_service_drift(reading, UNIT, "a" * 64, VAR, list(managed))


def test_the_fingerprint_changes_with_any_part_and_with_where_parts_split():
    base = flt.sglang_service_fingerprint(["unit", "env", "key", "launcher", "0.5.6.post1"])
    assert base == flt.sglang_service_fingerprint(["unit", "env", "key", "launcher", "0.5.6.post1"])
    assert base != flt.sglang_service_fingerprint(["unit", "env", "key2", "launcher", "0.5.6.post1"])
    assert flt.sglang_service_fingerprint(["ab", "c"]) != flt.sglang_service_fingerprint(["a", "bc"])
    with pytest.raises(AnsibleFilterError):
        flt.sglang_service_fingerprint("unit")


def test_a_server_started_from_what_the_role_renders_is_in_step():
    assert drift(state()) == {"drift": False, "restart": False, "reasons": [],
                              "unknown_dropins": []}


@pytest.mark.parametrize("unit, why", [
    ({"environ": {VAR: "b" * 64}}, "was started from other files than the role renders now "
                                   "(its KIMI_K2_SERVICE_FINGERPRINT differs)"),
    ({"environ": {}}, "is absent"),  # started before the toolkit wrote a fingerprint
    ({"NeedDaemonReload": "yes"}, "NeedDaemonReload=yes"),
    ({"NeedDaemonReload": "yes", "ActiveState": "inactive", "MainPID": "0"}, "NeedDaemonReload"),
])
def test_a_server_not_started_from_the_rendered_files_must_restart(unit, why):
    found = drift(state(**unit))
    assert found["restart"] and found["drift"] and why in " ".join(found["reasons"])
    assert "a" * 12 not in " ".join(found["reasons"])  # no digest: it covers the secrets


def test_a_stopped_server_or_an_unreadable_environment_claims_nothing():
    assert not drift(state(ActiveState="inactive", MainPID="0", environ={}))["drift"]
    reading = state()
    del reading["units"][UNIT]["environ"]  # not root: /proc/<pid>/environ unreadable
    assert not drift(reading)["drift"]


def test_unknown_drop_ins_are_drift_but_no_restart_and_managed_ones_are_neither():
    reading = state(dropins={DROPIN: ["ExecStart"], "/etc/systemd/system/sglang.service.d/ours.conf": []})
    found = drift(reading, managed=["ours.conf"])
    assert found["unknown_dropins"] == [DROPIN] and found["drift"] and not found["restart"]
    assert found["reasons"] == [f"drop-in {DROPIN} was not written by the toolkit"]


def test_a_running_command_like_the_rendered_one_has_no_problem():
    assert flt.sglang_running_argv_problems(state(), UNIT, ARGV) == []
    # Nothing runs: the health check says so, not this.
    assert flt.sglang_running_argv_problems(state(ActiveState="failed", MainPID="0"), UNIT, ARGV) == []


def test_a_drop_in_that_removes_the_parser_is_named():
    running = LAUNCH + [a for a in ARGV if a not in ("--reasoning-parser", "kimi_k2")]
    [problem] = flt.sglang_running_argv_problems(
        state(cmdline=running, dropins={DROPIN: ["ExecStart"]}), UNIT, ARGV)
    assert problem == ("--reasoning-parser missing from the running command; "
                       f"drop-in {DROPIN} overrides ExecStart")


def test_added_and_changed_flags_are_named_with_a_stale_unit_as_the_cause():
    running = LAUNCH + ["--model-path", "moonshotai/Kimi-K2-Thinking", "--tp-size", "4",
                        "--reasoning-parser", "kimi_k2", "--trust-remote-code", "--config",
                        "/etc/sglang/secrets.yaml", "--enable-metrics"]
    [problem] = flt.sglang_running_argv_problems(
        state(cmdline=running, NeedDaemonReload="yes"), UNIT, ARGV)
    assert "--tp-size is 4 in the running command, 8 rendered" in problem
    assert "--enable-metrics (no value) in the running command, not rendered" in problem
    assert problem.endswith("systemd runs an older sglang.service than the file on disk "
                            "(serve.yml restarts it)")
    [problem] = flt.sglang_running_argv_problems(state(cmdline=running), UNIT, ARGV)
    assert problem.endswith("the server was started from an older sglang.service (serve.yml restarts it)")


def test_the_verdict_fails_a_host_whose_running_command_differs():
    endpoint = {"group": "g", "variant": "thinking", "rank": 0, "argv": ARGV,
                "sglang_version": "0.5.6.post1"}
    smoke = [{"name": "health", "passed": True, "expected": 200, "got": 200}]
    verdict = sglang_verify_verdict({"host": "h", "endpoint": endpoint, "url": "u", "smoke": smoke,
                                     "running": ["--reasoning-parser missing"]})
    assert not verdict["passed"] and verdict["problems"] == ["h: --reasoning-parser missing"]
    assert sglang_verify_verdict({"host": "h", "endpoint": endpoint, "url": "u", "smoke": smoke})["passed"]


def test_something_else_than_a_reading_is_refused():
    with pytest.raises(AnsibleFilterError):
        flt.sglang_service_drift({"files": {}}, UNIT, "x", VAR, [])
