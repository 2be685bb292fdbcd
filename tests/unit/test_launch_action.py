"""sglang_service_launch: the action that publishes the launch fact and runs the preflight."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.kimi_k2.sglang.plugins.action import sglang_service_launch as launch_action

GOOD = {"problems": [], "argv": ["--tp-size", "8"], "resolved": {"node_rank": 0, "nnodes": 1}}
BAD = {"problems": ["tp 32 needs 32 GPUs", "port 0 is not a TCP port"], "argv": [],
       "resolved": {"node_rank": 0, "nnodes": 1}}
SAME = [["n0", "0.5.6.post1", "/srv/m"], ["n1", "0.5.6.post1", "/srv/m"]]


def run(args):
    task = SimpleNamespace(args=args, check_mode=False, async_val=0,
                           action="sglang_service_launch")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    return launch_action.ActionModule(task, connection, None, None, None).run(task_vars={})


def test_the_launch_is_published_as_a_fact_and_a_good_one_passes():
    result = run({"launch": GOOD, "preflight": True, "group": "pair1", "ranks": SAME})
    assert result["ansible_facts"] == {"sglang_service_launch": GOOD}
    assert not result.get("failed")


def test_without_preflight_problems_are_published_not_failed():
    # status.yml and endpoint.yml read the launch of a host that cannot start.
    result = run({"launch": BAD})
    assert result["ansible_facts"]["sglang_service_launch"]["problems"] == BAD["problems"]
    assert not result.get("failed")


def test_the_preflight_fails_with_every_launch_problem_and_keeps_the_fact():
    result = run({"launch": BAD, "preflight": True})
    assert result["failed"] is True
    assert result["msg"] == "tp 32 needs 32 GPUs | port 0 is not a TCP port"
    assert result["ansible_facts"]["sglang_service_launch"] == BAD


def test_missing_required_variables_are_reported_before_launch_problems():
    result = run({"launch": BAD, "preflight": True, "required": False})
    assert result["failed"] is True
    assert "sglang_service_api_key (a vault secret) must be set" in result["msg"]
    assert "tp 32" not in result["msg"]


def test_settings_out_of_range_are_reported_before_launch_problems():
    result = run({"launch": BAD, "preflight": True,
                  "settings": ["sglang_service_port is 0: set it to a TCP port from 1 to 65535"]})
    assert result["failed"] is True
    assert result["msg"] == "sglang_service_port is 0: set it to a TCP port from 1 to 65535"


@pytest.mark.parametrize("ranks,differs", [
    ([["n0", "0.5.6.post1", "/srv/m"], ["n1", "0.5.5", "/srv/m"]], "0.5.5"),
    ([["n0", "0.5.6.post1", "/srv/m"], ["n1", "0.5.6.post1", "/srv/other"]], "/srv/other"),
])
def test_ranks_that_disagree_fail_with_each_rank_named(ranks, differs):
    result = run({"launch": GOOD, "preflight": True, "group": "pair1", "ranks": ranks})
    assert result["failed"] is True
    assert result["msg"].startswith("Every rank of pair1 must set the same")
    assert "'n0'" in result["msg"] and "'n1'" in result["msg"] and differs in result["msg"]


def test_launch_problems_are_reported_before_disagreeing_ranks():
    ranks = [["n0", "0.5.6.post1", "/srv/m"], ["n1", "0.5.5", "/srv/m"]]
    result = run({"launch": BAD, "preflight": True, "group": "pair1", "ranks": ranks})
    assert result["msg"].startswith("tp 32")


def run_evaluated(args, task_vars):
    """The action with a real templar, as preflight.yml and launch.yml call it."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    task = SimpleNamespace(args=args, check_mode=False, async_val=0,
                           action="sglang_service_launch")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    def trust(value):  # as the inventory's YAML loader marks what it reads
        if isinstance(value, dict):
            return {k: trust(v) for k, v in value.items()}
        return trust_as_template(value) if isinstance(value, str) else value

    trusted = trust(task_vars)
    templar = Templar(loader=DataLoader(), variables=trusted)
    return launch_action.ActionModule(task, connection, None, None, templar, None).run(
        task_vars=trusted)


def test_evaluated_arguments_read_the_resolved_variables():
    task_vars = {
        "group": "pair1", "groups": {"pair1": ["n0", "n1"]}, "port": 30000,
        "nodes": "{{ groups[group] }}",
        "deployment": {"nnodes": "{{ nodes | length }}", "port": "{{ port }}",
                       "first": "{{ nodes | first }}"},
    }
    result = run_evaluated({"resolve": ["nodes", "deployment"], "evaluate": {
        "launch": "{'problems': [], 'argv': [], 'resolved': deployment}",
        "group": "group", "ranks": "nodes | zip([port, port], [group, group]) | list"},
        "preflight": True}, task_vars)
    assert result["ansible_facts"]["sglang_service_launch"]["resolved"] == {
        "nnodes": 2, "port": 30000, "first": "n0"}
    assert not result.get("failed")


def test_an_evaluated_launch_fails_the_preflight_as_a_given_one_does():
    result = run_evaluated({"evaluate": {"launch": "bad"}, "preflight": True},
                           {"bad": BAD})
    assert result["msg"] == "tp 32 needs 32 GPUs | port 0 is not a TCP port"


def test_an_argument_that_cannot_be_evaluated_fails_as_ansible_words_it():
    from ansible.errors import AnsibleError

    with pytest.raises(AnsibleError) as failure:
        run_evaluated({"resolve": ["deployment"], "evaluate": {"launch": "deployment"}},
                      {"deployment": "{{ nope }}"})
    assert str(failure.value) == ("Finalization of task args for 'sglang_service_launch' failed: "
                                  "Error while resolving value for 'launch': 'nope' is undefined")
