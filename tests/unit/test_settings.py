"""Every numeric, port and address setting of every role has a range rule, and an
out-of-range value is refused naming the variable (issue 14, fault 10)."""
import re

import pytest
import yaml
from ansible_collections.kimi_k2.sglang.plugins.filter import settings

from conftest import ROOT

RANGED = re.compile(r"(port|host|address|_url)$")


def spec_options():
    """(role, variable, option) for every option of every role's argument spec."""
    for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml")):
        entries = yaml.safe_load(path.read_text())["argument_specs"] or {}
        for entry in entries.values():
            for name, option in (entry.get("options") or {}).items():
                yield path.parts[-3], name, option


def needs_rule(name, option):
    kind = option.get("type", "str")
    return kind in ("int", "float") or (kind in ("str", "path") and bool(RANGED.search(name)))


RULED = sorted({name for _, name, option in spec_options() if needs_rule(name, option)})


def test_every_ranged_setting_of_every_role_has_a_rule():
    assert len(RULED) > 60
    missing = [name for name in RULED if name not in settings.RULES]
    assert not missing, f"add a range rule to plugins/filter/settings.py for {missing}"


def test_every_rule_is_a_setting_of_some_role():
    known = {name for _, name, _ in spec_options()}
    assert not set(settings.RULES) - known


def bad_values(rule):
    if rule.kind == "count":
        values = [rule.low - 1, "many", 2.5, True]
        if rule.high is not None:
            values.append(rule.high + 1)
        if not rule.nullable:
            values.append(None)
        return values
    return {"fraction": [1.5, 1, 0, -0.1, "most"], "port": [0, 65536, -1, "http"],
            "address": ["not an address", "-bad-.example", "a..b", 12],
            "url": ["huggingface.co/x", "ftp://x/y", "http://", "https://host:port/"],
            }[rule.kind]


@pytest.mark.parametrize("name", RULED)
def test_an_out_of_range_value_is_refused_naming_the_variable(name):
    rule = settings.RULES[name]
    for value in bad_values(rule):
        problems = settings.setting_problems({name: value})
        assert len(problems) == 1 and problems[0].startswith(f"{name} is "), (value, problems)
        assert "set it" in problems[0]


@pytest.mark.parametrize("name,value", [
    ("sglang_service_mem_fraction_static", 0.88), ("sglang_service_mem_fraction_static", None),
    ("sglang_service_chunked_prefill_size", -1), ("sglang_service_chunked_prefill_size", "8192"),
    ("sglang_service_port", 30000), ("sglang_service_host", "0.0.0.0"),
    ("sglang_service_host", "::"), ("sglang_service_cluster_address", "10.10.2.11"),
    ("sglang_service_cluster_address", "h200-b01.cluster.internal"),
    ("sglang_router_prometheus_host", "fe80::1"), ("sglang_pip_index_url", ""),
    ("nvidia_driver_repo_url", "https://mirror.internal:8443/cuda/debian12/x86_64/"),
    ("sglang_verify_gsm8k_dataset_url", "file:///srv/gsm8k/test.jsonl"),
    ("sglang_rollout_min_serving_groups", 0),
])
def test_values_in_range_pass(name, value):
    assert settings.setting_problems({name: value}) == []


def test_every_role_default_that_is_a_value_is_in_range():
    for role, name, option in spec_options():
        default = option.get("default")
        if name in settings.RULES and not (isinstance(default, str) and "{{" in default):
            assert settings.setting_problems({name: default}) == [], (role, name, default)


def test_two_settings_of_one_host_on_one_port_are_refused():
    problems = settings.setting_problems({"sglang_service_port": 50000,
                                          "sglang_service_dist_init_port": 50000})
    assert problems == ["sglang_service_dist_init_port and sglang_service_port share port "
                        "50000 on this host: give each its own port"]
    problems = settings.setting_problems({"sglang_router_port": 29000,
                                          "sglang_router_prometheus_port": "29000"})
    assert "sglang_router_port" in problems[0] and "sglang_router_prometheus_port" in problems[0]


def test_a_port_inside_the_rendezvous_span_is_refused():
    problems = settings.setting_problems({"sglang_service_port": 50003,
                                          "sglang_service_dist_init_port": 50000})
    assert len(problems) == 1 and "sglang_service_port is 50003" in problems[0]
    assert settings.setting_problems({"sglang_service_port": 50006,
                                      "sglang_service_dist_init_port": 50000}) == []


START_LIMIT = {"sglang_service_restart_burst": 3, "sglang_service_start_timeout": 3600,
               "sglang_service_restart_delay": 30}


def test_a_start_limit_window_that_cannot_stop_a_crash_after_a_full_load_is_refused():
    # Issue 14, fault 5: three starts of an hour's load never fit 3600 s, so a server
    # that crashes after loading reloaded forever.
    problems = settings.setting_problems({**START_LIMIT, "sglang_service_restart_interval": 3600})
    assert len(problems) == 1 and problems[0].startswith("sglang_service_restart_interval is 3600")
    assert "set it above 10890" in problems[0]
    assert settings.setting_problems({**START_LIMIT, "sglang_service_restart_interval": 10891}) == []


def test_the_derived_start_limit_window_passes_its_own_rule():
    # The role default, evaluated as Ansible does.
    from ansible.template import Templar, trust_as_template
    default = yaml.safe_load((ROOT / "roles/sglang_service/defaults/main.yml").read_text())
    for timeout, delay, burst in ((3600, 30, 3), (120, 1, 1), (1, 0, 5)):
        values = {**default, "sglang_service_start_timeout": timeout,
                  "sglang_service_restart_delay": delay, "sglang_service_restart_burst": burst}
        interval = Templar(loader=None, variables=values).template(
            trust_as_template(values["sglang_service_restart_interval"]))
        assert settings.setting_problems({
            "sglang_service_restart_interval": interval, "sglang_service_start_timeout": timeout,
            "sglang_service_restart_delay": delay, "sglang_service_restart_burst": burst}) == []


def test_a_name_without_a_rule_is_an_error_not_a_pass():
    with pytest.raises(settings.AnsibleFilterError, match="no range rule"):
        settings.setting_problems({"sglang_service_prot": 1})


def test_setting_names_are_exactly_the_ruled_settings_of_the_roles_spec():
    # sglang_router_port is sglang_router's, not sglang's: each role checks its own only
    # (its preflight cannot read another role's defaults).
    by_role = {}
    for role, name, _ in spec_options():
        if name in settings.RULES:
            by_role.setdefault(role, set()).add(name)
    assert set(settings.ROLES) == set(by_role)
    for role, names in by_role.items():
        assert set(settings.setting_names(role)) == names, role


# Internal roles: their ranged inputs are set by their callers from settings those callers
# check (sglang_pip_index_url, sglang_verify_gsm8k_dataset_url, ...).
CHECKED_BY_CALLERS = {"toolkit_common"}


def test_every_role_with_ranged_settings_checks_them():
    roles = {role for role, name, option in spec_options() if name in settings.RULES}
    assert roles >= {"sglang_service", "sglang_router", "model_weights", "sglang_verify"}
    for role in sorted(roles - CHECKED_BY_CALLERS):
        wiring = [path for path in (ROOT / "roles" / role).rglob("*.yml")
                  if f"'{role}' | kimi_k2.sglang.setting_names" in path.read_text()
                  or "tasks_from: settings\n" in path.read_text()]
        assert wiring, f"roles/{role} never runs its settings through setting_problems"
