"""plugins/modules/host_state.py reads a host in one call; plugins/filter/host_state.py decides
from that reading which tasks can be skipped. A wrong "already so" would leave a host
unconverged, so each comparison is checked to say no on every kind of difference."""
from __future__ import annotations

import hashlib
import os
import pwd

import pytest
from ansible.errors import AnsibleFilterError
from conftest import run_module

from ansible_collections.kimi_k2.sglang.plugins.filter import host_state as flt
from ansible_collections.kimi_k2.sglang.plugins.modules import host_state as mod


ME = pwd.getpwuid(os.getuid()).pw_name


def test_module_reads_files_markers_and_accounts(tmp_path, monkeypatch, capsys):
    unit = tmp_path / "x.service"
    unit.write_text("[Unit]\n")
    unit.chmod(0o640)
    (tmp_path / "marker.json").write_text('{"a": 1}\n')
    result = run_module(mod.main, {"files": [str(unit), str(tmp_path), str(tmp_path / "gone")],
                         "read": [str(tmp_path / "marker.json"), str(tmp_path / "gone")],
                         "users": [ME, "no-such-user-here"], "groups": ["no-such-group-here"]},
                        monkeypatch, capsys)
    assert result["changed"] is False
    assert result["files"][str(unit)] == {
        "exists": True, "isdir": False, "mode": "0640", "owner": ME,
        "group": result["files"][str(unit)]["group"],
        "checksum": hashlib.sha1(b"[Unit]\n").hexdigest()}
    assert result["files"][str(tmp_path)]["isdir"] and \
        "checksum" not in result["files"][str(tmp_path)]
    assert result["files"][str(tmp_path / "gone")] == {"exists": False}
    assert result["read"] == {str(tmp_path / "marker.json"): '{"a": 1}\n',
                              str(tmp_path / "gone"): ""}
    assert result["users"][ME]["uid"] == os.getuid() and "no-such-user-here" not in result["users"]
    assert result["groups"] == {}


def test_dpkg_status_counts_only_fully_installed_packages():
    text = "libnuma1 ii \nnumactl rc \npython3-venv:amd64 ii \n"
    assert mod.parse_dpkg(text) == {"libnuma1": True, "numactl": False, "python3-venv": True}


def test_systemctl_show_blocks_map_to_units_in_order():
    text = ("ActiveState=active\nMainPID=42\nNeedDaemonReload=no\nUnitFileState=enabled\n"
            "LoadState=loaded\n\nLoadState=not-found\nActiveState=inactive\nMainPID=0\n"
            "NeedDaemonReload=no\nUnitFileState=\n")
    units = mod.parse_systemctl_show(text, ["a.service", "b.service"])
    assert units["a.service"]["MainPID"] == "42"
    assert units["b.service"]["LoadState"] == "not-found"


CONTENT = "[Service]\nExecStart=/bin/true\n"
STATE = {
    "files": {
        "/etc/u": {"exists": True, "isdir": False, "mode": "0644", "owner": "root",
                   "group": "root", "checksum": hashlib.sha1(CONTENT.encode()).hexdigest()},
        "/etc/d": {"exists": True, "isdir": True, "mode": "0750", "owner": "root",
                   "group": "sglang"},
        "/etc/gone": {"exists": False},
    },
    "packages": {"a": True, "b": False},
    "users": {"sglang": {"uid": 990, "gid": 990, "home": "/var/lib/sglang",
                         "shell": "/usr/sbin/nologin"}},
    "groups": {"sglang": {"gid": 990}, "other": {"gid": 5}},
    "units": {"s.service": {"LoadState": "loaded", "UnitFileState": "enabled",
                            "ActiveState": "active", "NeedDaemonReload": "no", "MainPID": "7"}},
}


def test_a_file_in_place_is_current():
    assert flt.host_file_current(STATE, "/etc/u", "root", "root", "0644", CONTENT)
    assert flt.host_file_current(STATE, "/etc/d", "root", "sglang", "0750")


@pytest.mark.parametrize("path, owner, group, mode, content", [
    ("/etc/u", "root", "root", "0644", CONTENT + "\n"),      # content
    ("/etc/u", "root", "root", "0640", CONTENT),             # mode
    ("/etc/u", "root", "sglang", "0644", CONTENT),           # group
    ("/etc/u", "sglang", "root", "0644", CONTENT),           # owner
    ("/etc/u", "root", "root", "0644", None),                # a file where a directory belongs
    ("/etc/d", "root", "sglang", "0750", ""),                # a directory where a file belongs
    ("/etc/gone", "root", "root", "0644", CONTENT),          # missing
    ("/etc/unread", "root", "root", "0644", CONTENT),        # never read
])
def test_any_difference_makes_a_file_not_current(path, owner, group, mode, content):
    assert not flt.host_file_current(STATE, path, owner, group, mode, content)


def test_packages_accounts_and_units():
    assert flt.host_packages_installed(STATE, ["a"])
    assert not flt.host_packages_installed(STATE, ["a", "b"])
    assert not flt.host_packages_installed(STATE, ["a", "unread"])
    assert flt.host_account_current(STATE, "sglang", "sglang", "/var/lib/sglang", "/usr/sbin/nologin")
    assert not flt.host_account_current(STATE, "sglang", "other", "/var/lib/sglang",
                                        "/usr/sbin/nologin")
    assert not flt.host_account_current(STATE, "sglang", "sglang", "/home/sglang",
                                        "/usr/sbin/nologin")
    assert not flt.host_account_current(STATE, "nobody", "sglang", "/", "/usr/sbin/nologin")
    assert flt.host_unit_running(STATE, "s.service")
    assert not flt.host_unit_running(STATE, "other.service")


@pytest.mark.parametrize("key, value", [("ActiveState", "failed"), ("UnitFileState", "disabled"),
                                        ("NeedDaemonReload", "yes"), ("LoadState", "not-found")])
def test_a_unit_that_a_start_would_change_is_not_running_as_wanted(key, value):
    state = {"units": {"s.service": {**STATE["units"]["s.service"], key: value}}}
    assert not flt.host_unit_running(state, "s.service")
    assert flt.host_unit_stale(state, "s.service") == (key == "NeedDaemonReload")


def test_a_unit_systemd_gave_up_on_or_waits_to_restart_is_failed_with_its_result():
    # Issue 14, fault 5: serve clears such a unit (reset-failed) and starts it again.
    base = {**STATE["units"]["s.service"], "SubState": "running", "Result": "success"}
    assert flt.host_unit_failed({"units": {"s.service": base}}, "s.service") == ""
    assert flt.host_unit_failed({"units": {}}, "s.service") == ""
    failed = {**base, "ActiveState": "failed", "SubState": "failed", "Result": "start-limit-hit"}
    assert flt.host_unit_failed({"units": {"s.service": failed}}, "s.service") == "start-limit-hit"
    looping = {**base, "ActiveState": "activating", "SubState": "auto-restart", "Result": "exit-code"}
    assert flt.host_unit_failed({"units": {"s.service": looping}}, "s.service") == "exit-code"
    # A crash loop is not a running service: the role restarts it.
    assert not flt.host_unit_running({"units": {"s.service": looping}}, "s.service")


def test_something_else_than_a_reading_is_refused():
    with pytest.raises(AnsibleFilterError, match="host_state result with 'files'"):
        flt.host_file_current({"skipped": True}, "/etc/u", "root", "root", "0644")


# ---- Drift (issue 14, faults 1 and 8): drop-ins, the main process's command and the
# asked variables of its environment, and nothing else of it.

def test_drop_ins_are_found_loaded_or_waiting_for_a_reload(tmp_path):
    etc = tmp_path / "etc"
    (etc / "sglang.service.d").mkdir(parents=True)
    (etc / "sglang.service.d" / "x.conf").write_text(
        "# a hand edit\n[Service]\nExecStart=\nExecStart=/bin/true\nEnvironment=A=1\n")
    (etc / "sglang.service.d" / "notes.txt").write_text("not a drop-in\n")
    loaded = f"{etc}/sglang.service.d/x.conf /usr/lib/systemd/system/service.d/10-all.conf"
    found = mod.unit_dropins("sglang.service", loaded, roots=(str(etc), str(tmp_path / "run")))
    # service.d drop-ins apply to every service: not this unit's own.
    assert found == {f"{etc}/sglang.service.d/x.conf": ["Environment", "ExecStart"]}


def test_the_main_process_gives_its_command_and_only_the_asked_variables(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cmdline").write_bytes(b"python\0-m\0sglang.launch_server\0--tp-size\0008\0")
    (tmp_path / "7" / "environ").write_bytes(b"KIMI_K2_SERVICE_FINGERPRINT=abc\0HF_TOKEN=hf_secret\0")
    found = mod.main_process("7", ["KIMI_K2_SERVICE_FINGERPRINT", "ABSENT"], proc=str(tmp_path))
    assert found == {"cmdline": ["python", "-m", "sglang.launch_server", "--tp-size", "8"],
                     "environ": {"KIMI_K2_SERVICE_FINGERPRINT": "abc"}}
    (tmp_path / "7" / "environ").unlink()  # another user's process: no claim
    assert "environ" not in mod.main_process("7", ["X"], proc=str(tmp_path))
    assert mod.main_process("8", [], proc=str(tmp_path)) == {}


def test_root_without_ptrace_reads_the_environment_as_the_process_user(tmp_path, monkeypatch):
    # Root in a container lacks CAP_SYS_PTRACE: /proc/<pid>/environ of another user's
    # process refuses it, and the process's own user may read it.
    (tmp_path / "environ").write_bytes(b"A=1\0")
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path).endswith("environ"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    asked = {}

    def run(argv, **kwargs):
        asked.update(kwargs, argv=argv)
        return mod.subprocess.CompletedProcess(argv, 0, b"A=1\0", b"")

    monkeypatch.setattr("builtins.open", refuse)
    monkeypatch.setattr(mod.os, "geteuid", lambda: 0)
    monkeypatch.setattr(mod.subprocess, "run", run)
    assert mod.read_environ(str(tmp_path)) == b"A=1\0"
    assert asked["argv"] == ["cat", str(tmp_path / "environ")]
    assert asked["user"] == os.stat(tmp_path).st_uid and asked["extra_groups"] == []
    monkeypatch.setattr(mod.os, "geteuid", lambda: 1000)  # not root: no claim
    assert mod.read_environ(str(tmp_path)) is None
