"""sglang_service_plan_files: the action that writes each host's plan on the controller."""
from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.kimi_k2.sglang.plugins.action import sglang_service_plan_files as plan_files

FILES = [{"name": "sglang.service", "content": "[Unit]\nDescription=x\n"},
         {"name": "argv.json", "content": '{"argv": []}\n'}]


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_every_file_with_its_mode_and_creates_the_directory(tmp_path):
    dest = tmp_path / "plan" / "h200-a01"
    assert plan_files.write_plan(dest, FILES) == ["sglang.service", "argv.json"]
    assert (dest / "sglang.service").read_text() == "[Unit]\nDescription=x\n"
    assert (dest / "argv.json").read_bytes() == b'{"argv": []}\n'
    assert mode(dest) == 0o755
    assert mode(dest / "sglang.service") == mode(dest / "argv.json") == 0o644
    assert sorted(p.name for p in dest.iterdir()) == ["argv.json", "sglang.service"]


def test_a_second_run_changes_nothing(tmp_path):
    plan_files.write_plan(tmp_path, FILES)
    assert plan_files.write_plan(tmp_path, FILES) == []


def test_only_the_files_whose_content_or_mode_differ_are_rewritten(tmp_path):
    plan_files.write_plan(tmp_path, FILES)
    (tmp_path / "argv.json").chmod(0o600)
    changed = [{**FILES[0], "content": "[Unit]\nDescription=y\n"}, FILES[1]]
    assert plan_files.write_plan(tmp_path, changed) == ["sglang.service", "argv.json"]
    assert (tmp_path / "sglang.service").read_text() == "[Unit]\nDescription=y\n"
    assert mode(tmp_path / "argv.json") == 0o644


def test_check_mode_reports_and_writes_nothing(tmp_path):
    dest = tmp_path / "new"
    assert plan_files.write_plan(dest, FILES, check=True) == ["sglang.service", "argv.json"]
    assert not dest.exists()


@pytest.mark.parametrize("name", ["", "..", "../escape", "sub/file"])
def test_names_outside_the_host_directory_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="is not a file name"):
        plan_files.write_plan(tmp_path / "h", [{"name": name, "content": "x"}])
    assert not (tmp_path / "h").exists() and not (tmp_path / "escape").exists()


def test_a_name_listed_twice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="listed twice"):
        plan_files.write_plan(tmp_path, [FILES[0], FILES[0]])


def action(args, check_mode=False):
    task = SimpleNamespace(args=args, check_mode=check_mode, async_val=0,
                           action="sglang_service_plan_files")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    return plan_files.ActionModule(task, connection, None, None, None)


def test_the_action_reports_the_changed_files(tmp_path):
    result = action({"dest": str(tmp_path / "h"), "files": FILES}).run(task_vars={})
    assert result["changed"] is True and result["files"] == ["sglang.service", "argv.json"]
    again = action({"dest": str(tmp_path / "h"), "files": FILES}).run(task_vars={})
    assert again["changed"] is False and again["files"] == []


def test_the_action_honours_check_mode(tmp_path):
    result = action({"dest": str(tmp_path / "h"), "files": FILES}, check_mode=True).run(task_vars={})
    assert result["changed"] is True and not (tmp_path / "h").exists()


@pytest.mark.parametrize("args,words", [
    ({"files": FILES}, "dest"),
    ({"dest": "/tmp/x", "files": [{"name": "a"}]}, "content"),
])
def test_the_action_refuses_missing_arguments(args, words):
    with pytest.raises(AnsibleActionFail, match=words):
        action(args).run(task_vars={})


def test_the_action_fails_with_the_directory_it_could_not_write(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(AnsibleActionFail, match="cannot write the plan into .*file"):
        action({"dest": str(tmp_path / "file" / "h"), "files": FILES}).run(task_vars={})


def test_the_action_shows_its_line_at_any_verbosity_only_when_given_one(tmp_path):
    shown = action({"dest": str(tmp_path / "h"), "files": FILES, "msg": "h1 rank 0/1: --x"})
    result = shown.run(task_vars={})
    assert result["msg"] == "h1 rank 0/1: --x" and result["_ansible_verbose_always"] is True
    silent = action({"dest": str(tmp_path / "h"), "files": FILES}).run(task_vars={})
    assert "msg" not in silent and "_ansible_verbose_always" not in silent


def test_a_file_takes_its_content_or_a_template_not_both(tmp_path):
    both = [{"name": "a", "content": "x", "src": "sglang.service.j2"}]
    with pytest.raises(AnsibleActionFail, match="mutually exclusive"):
        action({"dest": str(tmp_path / "h"), "files": both}).run(task_vars={})
    assert not (tmp_path / "h").exists()


def test_evaluated_files_and_line_read_the_resolved_variables(tmp_path):
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    variables = {"group": "pair1", "groups": {"pair1": ["n0", "n1"]},
                 "nodes": trust_as_template("{{ groups[group] }}"),
                 "listing": [{"name": "nodes.txt",
                              "content": trust_as_template("{{ nodes | join(',') }}\n")}]}
    task = SimpleNamespace(args={"dest": str(tmp_path / "h"), "resolve": ["nodes"],
                                 "evaluate": {"files": "listing",
                                              "msg": "group ~ ': ' ~ nodes | length"}},
                           check_mode=False, async_val=0, action="sglang_service_plan_files")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    templar = Templar(loader=DataLoader(), variables=variables)
    result = plan_files.ActionModule(task, connection, None, None, templar, None).run(
        task_vars=variables)
    assert result["msg"] == "pair1: 2"
    assert (tmp_path / "h" / "nodes.txt").read_text() == "n0,n1\n"
