"""sglang_rollout's filters: groups from endpoint facts, batches, the serving floor, the report."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_rollout as rollout


def fleet(pending=("pair1", "pair2", "solo"), outcomes=None):
    """Two 2-node groups and a single-node server, rank 1 listed first on purpose."""
    layout = {"b2": ("pair1", 1), "b1": ("pair1", 0), "c1": ("pair2", 0), "c2": ("pair2", 1),
              "a1": ("solo", 0)}
    hostvars = {}
    for host, (group, rank) in layout.items():
        hostvars[host] = {"sglang_service_endpoint": {
            "group": group, "rank": str(rank), "cluster_url": f"http://{host}:30000"},
            "__sglang_rollout_pending": group in pending}
        if outcomes and group in outcomes and rank == 0:
            hostvars[host]["__sglang_rollout_outcome"] = outcomes[group]
    return list(layout), hostvars


def test_groups_keep_inventory_order_and_list_hosts_by_rank():
    hosts, hostvars = fleet(pending=("pair2",))
    groups = rollout.sglang_rollout_groups(hosts, hostvars)
    assert [(g["name"], g["hosts"], g["leader"], g["pending"]) for g in groups] == [
        ("pair1", ["b1", "b2"], "b1", False), ("pair2", ["c1", "c2"], "c1", True),
        ("solo", ["a1"], "a1", False)]
    assert groups[1]["url"] == "http://c1:30000"


def plan(batch_size=1, floor=1, order=(), pending=("pair1", "pair2", "solo")):
    hosts, hostvars = fleet(pending)
    return rollout.sglang_rollout_plan(rollout.sglang_rollout_groups(hosts, hostvars),
                                       batch_size, floor, list(order))


def names(result):
    return [[g["name"] for g in batch] for batch in result["batches"]]


def test_one_group_at_a_time_in_inventory_order():
    result = plan()
    assert names(result) == [["pair1"], ["pair2"], ["solo"]] and result["problems"] == []


def test_a_stated_order_comes_first_and_unchanged_groups_are_skipped():
    result = plan(order=["solo"], pending=("pair1", "solo"))
    assert names(result) == [["solo"], ["pair1"]]
    assert result["unchanged"] == ["pair2"]


@pytest.mark.parametrize("size,expected", [(2, [["pair1", "pair2"], ["solo"]]),
                                           ("34%", [["pair1"], ["pair2"], ["solo"]]),
                                           ("67%", [["pair1", "pair2"], ["solo"]])])
def test_batches_by_count_or_percentage(size, expected):
    assert names(plan(batch_size=size, floor=1)) == expected


def test_a_batch_that_would_break_the_floor_is_refused():
    problems = plan(batch_size=2, floor=2)["problems"]
    assert problems == ["a batch of 2 of 3 groups would leave 1 serving, below "
                        "sglang_rollout_min_serving_groups (2): lower sglang_rollout_batch_size "
                        "or the floor"]


def test_nothing_pending_is_an_empty_plan_even_with_a_strict_floor():
    result = plan(floor=3, pending=())
    assert result["batches"] == [] and result["problems"] == []


def test_an_unknown_group_in_the_order_is_refused():
    assert plan(order=["pair9"])["problems"][0].startswith("sglang_rollout_order names pair9")


@pytest.mark.parametrize("size", ["0", "many", 0])
def test_a_bad_batch_size_names_the_variable(size):
    with pytest.raises(AnsibleFilterError, match="sglang_rollout_batch_size"):
        plan(batch_size=size)


def test_a_group_without_rank_0_in_the_play_is_refused():
    hosts, hostvars = fleet()
    hosts.remove("b1")
    result = rollout.sglang_rollout_plan(rollout.sglang_rollout_groups(hosts, hostvars), 1, 1, [])
    assert "group pair1 has no rank 0 in this play: include all its hosts" in result["problems"]


def test_the_report_names_the_group_that_failed_and_what_was_not_reached():
    outcomes = {"pair1": {"status": "rolled", "problems": []},
                "pair2": {"status": "rolled back", "problems": ["gsm8k accuracy 0.300 < 0.93"]}}
    hosts, hostvars = fleet(outcomes=outcomes)
    hostvars["b1"]["sglang_rollout_plan"] = plan()
    report = rollout.sglang_rollout_report(hosts, hostvars)
    assert report["passed"] is False and report["failed_group"] == "pair2"
    assert [(r["group"], r["status"]) for r in report["groups"]] == [
        ("pair1", "rolled"), ("pair2", "rolled back"), ("solo", "not reached")]


def test_a_rollout_where_every_group_rolled_passes():
    outcomes = {g: {"status": "rolled", "problems": []} for g in ("pair1", "pair2", "solo")}
    hosts, hostvars = fleet(outcomes=outcomes)
    hostvars["a1"]["sglang_rollout_plan"] = plan()
    assert rollout.sglang_rollout_report(hosts, hostvars)["passed"] is True
