"""The toolkit's locks: one run holds a lock file, re-entrant, replaced only when asked
for the run that holds it (issue 14, fault 4; the two-run test is in
tests/integration/test_demo.py)."""
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.kimi_k2.sglang.plugins.action import toolkit_lock as action
from ansible_collections.kimi_k2.sglang.plugins.module_utils import toolkit_lock as lock


def record(run_id, **more):
    return {"run_id": run_id, "owner": "ops@ctl", "controller": "ctl", "pid": 1,
            "started": "2026-12-05T10:00:00Z", "playbook": "serve", **more}


def test_one_run_holds_the_lock_and_takes_it_again_without_effect(tmp_path):
    path = str(tmp_path / "lock.json")
    assert lock.acquire(path, record("a")) == (True, None)
    assert lock.acquire(path, record("a")) == (True, None)  # serve.yml inside site.yml
    held, holder = lock.acquire(path, record("b"))
    assert not held and holder["run_id"] == "a"
    assert "run a of ops@ctl (ansible-playbook pid 1, serve) since 2026-12-05" in \
        lock.describe(holder)


def test_a_lock_is_replaced_only_for_the_run_that_holds_it(tmp_path):
    path = str(tmp_path / "lock.json")
    lock.acquire(path, record("a"))
    assert lock.acquire(path, record("c"), replace="b")[0] is False
    assert lock.acquire(path, record("c"), replace="a") == (True, None)
    assert lock.read(path)["run_id"] == "c"


def test_only_the_holder_gives_it_back(tmp_path):
    path = str(tmp_path / "lock.json")
    lock.acquire(path, record("a"))
    assert lock.release(path, "b") is False and os.path.exists(path)
    assert lock.release(path, "a") is True and not os.path.exists(path)
    assert lock.release(path, "a") is False


def _race(path, run_id, out):
    out.put((run_id, lock.acquire(path, record(run_id), folder_mode=0o700)[0]))


@pytest.mark.parametrize("folder", ["", "fresh"], ids=["folder-there", "folder-missing"])
def test_of_runs_racing_for_a_free_lock_exactly_one_wins(tmp_path, folder):
    # A missing folder too: a router and its server, two inventory hosts of one machine,
    # took a fresh host's lock at once and one crashed creating the folder.
    path = str(tmp_path / folder / "lock.json")
    out = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_race, args=(path, f"r{i}", out)) for i in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    # A racer that crashed (a folder two of them created at once) exits non-zero.
    assert [proc.exitcode for proc in procs] == [0] * len(procs)
    won = [run for run, held in (out.get(timeout=5) for _ in procs) if held]
    assert len(won) == 1 and lock.read(path)["run_id"] == won[0]


def test_a_record_cut_short_is_stale_not_a_crash(tmp_path):
    path = tmp_path / "lock.json"
    path.write_text('{"run_id": "a", "own')
    held, holder = lock.acquire(str(path), record("b"))
    assert not held and holder["unreadable"]
    assert action.over(holder, "ctl") == "stale"


@pytest.mark.parametrize("argv,name", [
    (["ansible-playbook", "-i", "inventories/demo", "playbooks/site.yml"], "site"),
    (["ansible-playbook", "-e", "a=b.c.d", "kimi_k2.sglang.rollout", "--check"], "rollout"),
    (["ansible-playbook", "/x/playbooks/serve.yaml", "-e", "@vars.yml"], "serve"),
    (["ansible-playbook", "-i", "inventories/production"], ""),
])
def test_the_run_is_named_after_the_playbook_it_was_started_with(argv, name):
    assert lock.top_playbook(argv) == name


def test_a_process_is_alive_only_while_its_pid_is_the_same_process():
    me = os.getpid()
    assert lock.process_alive(me, lock.process_start(me))
    assert not lock.process_alive(me, "1")  # the pid, but another start: reused
    done = subprocess.run(["true"], check=True)
    assert done.returncode == 0
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not lock.process_alive(gone.pid)
    assert not lock.process_alive("not a pid")


def test_how_a_holding_run_stands_from_this_controller(tmp_path, monkeypatch):
    monkeypatch.setenv("KIMI_K2_LOCK_DIR", str(tmp_path))
    here = socket.gethostname()
    me = os.getpid()
    live = record("live", controller=here, pid=me, pid_start=lock.process_start(me))
    assert action.over(live, here) == "live"
    dead = subprocess.Popen(["true"])
    dead.wait()
    ended = record("ended", controller=here, pid=dead.pid)
    assert action.over(ended, here) == "over"  # it gave back its controller lock
    lock.acquire(str(tmp_path / "inv.json"), ended)
    assert action.over(ended, here) == "stale"  # killed: its controller lock is left
    assert action.over(record("x", controller="elsewhere"), here) == "unknown"


def test_one_controller_lock_per_inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("KIMI_K2_LOCK_DIR", str(tmp_path / "locks"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = action.controller_lock_path([str(tmp_path / "a")])
    assert first == action.controller_lock_path([str(tmp_path / "a") + "/"])
    assert first != action.controller_lock_path([str(tmp_path / "b")])
    assert first.startswith(str(tmp_path / "locks") + "/a-")


ABORTING_RUN = """
- name: Take this inventory's lock, as every changing playbook's first play does
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Lock
      kimi_k2.sglang.toolkit_lock:
        scope: controller
- name: A play Ansible cannot even start ("ERROR!", no task failed)
  hosts: "{{ no_such_variable }}"
  gather_facts: false
  tasks: []
"""


def test_a_run_that_aborts_with_error_gives_its_controller_lock_back(tmp_path):
    """Ansible skips the callbacks' end-of-run event when a play cannot start; the lock
    callback's exit hook gives the lock back then (only a killed run leaves one)."""
    from conftest import ROOT
    (tmp_path / "abort.yml").write_text(ABORTING_RUN)
    (tmp_path / "hosts").write_text("localhost ansible_connection=local\n")
    env = {**os.environ, "KIMI_K2_LOCK_DIR": str(tmp_path / "locks"),
           "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_CALLBACK_PLUGINS": str(ROOT / "playbooks" / "callback_plugins")}
    run = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "hosts", "abort.yml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no_such_variable" in run.stdout + run.stderr
    assert "Lock" in run.stdout, "the lock task never ran: " + run.stdout[-2000:]
    assert [p.name for p in (tmp_path / "locks").glob("*.json")] == []
