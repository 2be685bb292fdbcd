"""The demo: a simulated fleet converged by the real site playbook, then probed."""
import getpass
import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from runner import ROOT, play, task_results

DEMO = ["kimi-demo-1", "kimi-demo-2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    # A killed run's demo containers (stuck, or half-converged) are not this run's hosts.
    subprocess.run([ROOT / "tools/testbed/clear-networks", "kimi-demo"], check=True)
    up = play("tools/demo/up.yml", "demo", tmp_path_factory.mktemp("up"))
    assert up.status == "successful"
    site = play("playbooks/site.yml", "demo", tmp_path_factory.mktemp("site"))
    status = play("playbooks/status.yml", "demo", tmp_path_factory.mktemp("status"))
    connection = play("tools/testbed/check_connection.yml", "demo", tmp_path_factory.mktemp("ssh"))
    again = play("playbooks/serve.yml", "demo", tmp_path_factory.mktemp("again"))
    yield site, status, connection, again
    play("tools/demo/down.yml", "demo", tmp_path_factory.mktemp("down"))


def test_site_converges_and_verifies_every_demo_host(demo):
    site, *_ = demo
    assert site.status == "successful", site.stdout.read()
    assert sorted(site.stats["ok"]) == DEMO + ["localhost"]  # localhost writes the report
    assert not site.stats["failures"] and not site.stats["dark"]
    [report] = task_results(site, "runner_on_ok", "Show where the report is").values()
    assert report["msg"].startswith("PASSED: 2 of 2 hosts fit to take traffic")
    verdicts = task_results(site, "runner_on_ok", "Fail the host unless every check and the "
                                                  "GSM8K gate passed")
    assert sorted(verdicts) == DEMO
    assert "10/10 smoke checks, GSM8K 1.0" in verdicts["kimi-demo-1"]["msg"]


def test_every_endpoint_is_healthy_and_serves_its_model(demo):
    _, status, *_ = demo
    lines = task_results(status, "runner_on_ok", "Show the endpoint")
    assert "health=200 models=['moonshotai/Kimi-K2-Thinking']" in lines["kimi-demo-1"]["msg"]
    assert "health=200 models=['moonshotai/Kimi-K2-Instruct']" in lines["kimi-demo-2"]["msg"]


def test_each_variant_runs_with_its_own_flags(demo):
    """kimi-demo-1 serves Kimi-K2-Thinking (tp8 profile), kimi-demo-2 Instruct: the
    reasoning parser only on Thinking. (The fleet scenario checks multi-node Instruct.)"""
    flags = {host: " ".join(subprocess.run(
        ["podman", "exec", host, "cat", "/etc/systemd/system/sglang.service"], check=True,
        capture_output=True, text=True).stdout.replace("\\\n", " ").split()) for host in DEMO}
    for flag in ("--model-path moonshotai/Kimi-K2-Thinking", "--tp-size 8",
                 "--reasoning-parser kimi_k2", "--tool-call-parser kimi_k2",
                 "--trust-remote-code", "--enable-metrics", "--config /etc/sglang/secrets.yaml"):
        assert flag in flags["kimi-demo-1"], flags["kimi-demo-1"]
    for flag in ("--dp-size", "--enable-dp-attention", "--max-running-requests"):
        assert flag not in flags["kimi-demo-1"], flags["kimi-demo-1"]
    assert "--model-path moonshotai/Kimi-K2-Instruct" in flags["kimi-demo-2"]
    assert "--reasoning-parser" not in flags["kimi-demo-2"]


def test_the_demo_hosts_are_reached_over_ssh_with_pipelining(demo):
    _, _, connection, _ = demo
    assert connection.status == "successful", connection.stdout.read()
    assert sorted(task_results(connection, "runner_on_ok", "Assert the connection plugin is ssh, "
                                                           "pipelined")) == DEMO


# Actions whose plugin decides on the controller: they never reach the host.
CONTROLLER_ACTIONS = {"set_fact", "assert", "debug", "meta", "include_tasks", "include_role",
                      "validate_argument_spec", "sglang_service_launch"}


def test_a_no_op_serve_only_reads_each_host(demo):
    """Everything in place: each host gets its three reads (packages and account, the
    venv's record, the service's files and units) and nothing else; every task that would
    write, install or start is skipped on the controller."""
    *_, again = demo
    assert again.status == "successful", again.stdout.read()
    assert all(again.stats["changed"].get(host, 0) == 0 for host in DEMO), again.stats
    on_host = {host: [] for host in DEMO}
    for event in again.events:
        data = event.get("event_data", {})
        delegated = data.get("res", {}).get("_ansible_delegated_vars", {})
        if event["event"] == "runner_on_ok" and data["host"] in on_host \
                and data["task_action"].rsplit(".", 1)[-1] not in CONTROLLER_ACTIONS \
                and delegated.get("ansible_host") != "localhost":
            on_host[data["host"]].append(data["task"])
    assert on_host == {host: ["Lock each host for this run",
                              "install | Read the installed packages and the service account",
                              "pinned_venv | Read what the venv was installed from",
                              "configure | Read the service's files and units",
                              "Unlock each host"]
                       for host in DEMO}


# ---- A hung single-node server (issue 14, fault 6): its watchdog, a group of one, restarts
# it; systemd alone notices only an exit.

def on(host, command):
    return subprocess.run(["podman", "exec", host, "sh", "-c", command], check=True,
                          capture_output=True, text=True).stdout


def wait_for(condition, budget, what):
    deadline = time.monotonic() + budget
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(1)


def test_a_hung_single_node_server_is_restarted_by_its_watchdog(demo):
    host, watchdog = "kimi-demo-1", "sglang-group-watchdog.service"
    journal = f"journalctl -u {watchdog} -o cat --no-pager"
    assert on(host, f"systemctl is-active {watchdog} || true").strip() == "active"
    wait_for(lambda: "armed: 1 rank healthy" in on(host, journal), 60,
             "the watchdog never saw the server healthy")
    started = on(host, "systemctl show sglang.service -p ActiveEnterTimestampMonotonic --value")
    # The simulator's named fault: the scheduler hangs, the process lives on.
    on(host, "systemctl kill --kill-whom=main --signal=SIGUSR1 sglang.service")
    wait_for(lambda: on(host, "systemctl show sglang.service -p ActiveEnterTimestampMonotonic "
                              "--value") != started, 120, on(host, journal))
    text = on(host, journal)
    assert ("restarting sglang.service: rank 0 http://127.0.0.1:30000/health_generate "
            "(HTTP 503) failed 3 consecutive probes") in text, text
    # Back and serving; the watchdog, restarted with it, is armed again.
    wait_for(lambda: on(host, "curl -s -o /dev/null -w '%{http_code}' "
                              "http://127.0.0.1:30000/health_generate || true") == "200",
             60, "the restarted server never became healthy")
    wait_for(lambda: on(host, journal).count("armed: 1 rank healthy") >= 2, 60, on(host, journal))


# ---- Two operators (issue 14, fault 4): the second run is refused at once, naming the
# first; a killed run's lock is broken only when the operator says so.

HOST_LOCK = "/var/lib/kimi-k2-toolkit/lock.json"


def start(playbook, lock_dir, *args, inventory=ROOT / "inventories" / "demo"):
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "KIMI_K2_LOCK_DIR": str(lock_dir)}
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i",
                             str(inventory), str(ROOT / "playbooks" / playbook), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)


def host_locked(host):
    return subprocess.run(["podman", "exec", host, "test", "-e", HOST_LOCK]).returncode == 0


def wait_until_locked(run, budget=180):
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        assert run.poll() is None, run.stdout.read()
        if all(host_locked(host) for host in DEMO):
            return
        time.sleep(0.5)
    raise AssertionError("the first run never locked the hosts")


def finish(run, timeout=900):
    out = run.communicate(timeout=timeout)[0]
    return run.returncode, out


def test_a_second_run_is_refused_at_once_naming_the_first(demo, tmp_path):
    first = start("site.yml", tmp_path / "locks")
    wait_until_locked(first)
    # Same inventory, same controller: the inventory's lock refuses it.
    began = time.monotonic()
    rc, out = finish(start("serve.yml", tmp_path / "locks"), timeout=120)
    assert rc != 0 and time.monotonic() - began < 60, out
    text = " ".join(out.split())
    assert f"Another run holds this inventory: run {getpass.getuser()}@" in text, out
    assert f"(ansible-playbook pid {first.pid}, site) since 20" in text, out
    # Another copy of the inventory (another operator's checkout) on the same hosts: each
    # host's lock refuses it.
    copy = tmp_path / "demo-copy"
    shutil.copytree(ROOT / "inventories" / "demo", copy)
    rc, out = finish(start("serve.yml", tmp_path / "locks", inventory=copy), timeout=120)
    assert rc != 0, out
    assert "kimi-demo-1 is held by another run" in " ".join(out.split()), out
    # The first run was not disturbed, and gave every lock back.
    rc, out = finish(first)
    assert rc == 0, out
    assert not any(host_locked(host) for host in DEMO)
    assert not list((tmp_path / "locks").glob("*.json"))


def test_a_killed_runs_lock_is_broken_only_when_asked(demo, tmp_path):
    first = start("serve.yml", tmp_path / "locks")
    wait_until_locked(first)
    os.killpg(first.pid, signal.SIGKILL)  # the controller dies: no callback, no release
    first.wait()
    rc, out = finish(start("serve.yml", tmp_path / "locks"), timeout=120)
    text = " ".join(out.split())
    assert rc != 0 and "whose process is gone" in text, out
    assert "-e toolkit_break_lock=true" in text
    rc, out = finish(start("serve.yml", tmp_path / "locks", "-e", "toolkit_break_lock=true"))
    assert rc == 0, out
    assert "broke the inventory lock of a run that is gone" in " ".join(out.split())
    assert not any(host_locked(host) for host in DEMO)


def test_a_failed_run_gives_its_locks_back_to_the_next(demo, tmp_path):
    # A run that fails after it took the locks: the callback gives back the inventory's
    # lock, and the next run takes over the host locks the failure left, saying so.
    rc, out = finish(start("serve.yml", tmp_path / "locks", "-e",
                           "sglang_service_start_timeout=0"))
    assert rc != 0, out
    assert not list((tmp_path / "locks").glob("*.json")), out
    rc, out = finish(start("serve.yml", tmp_path / "locks"))
    assert rc == 0, out


# ---- Fail fast and recover (issue 14, fault 5): a server that crashes at start fails the
# health gate within seconds, naming the unit's state and the journal's tail (secrets
# masked); systemd's giving up is recorded by the unit's OnFailure= hook and shown by
# status.yml; a re-run with a good configuration clears the failure and serves again.

DEMO_ENV = {"SGLANG_SIM_LOAD_SECONDS": 2, "SGLANG_SIM_WARMUP_SECONDS": 2,
            "SGLANG_SIM_GSM8K": "/var/cache/sglang-verify/gsm8k-test.jsonl"}
DEMO_KEY = "demo-key-not-a-secret"


def unit_state(host):
    out = subprocess.run(["podman", "exec", host, "systemctl", "show", "sglang.service",
                          "-p", "ActiveState,Result"], check=True, capture_output=True,
                         text=True).stdout
    return dict(line.split("=", 1) for line in out.split())


def test_a_server_that_crashes_at_start_fails_the_gate_at_once_and_a_good_run_recovers(demo, tmp_path):
    host = "kimi-demo-2"
    crash = {"sglang_service_extra_env": {**DEMO_ENV, "SGLANG_SIM_FAIL_AFTER_LOAD": "CUDA out of memory"},
             # One start per window, a second between crash and restart: systemd gives up
             # on the second start, seconds in.
             "sglang_service_restart_burst": 1, "sglang_service_restart_delay": 1}
    began = time.monotonic()
    rc, out = finish(start("serve.yml", tmp_path / "locks", "--limit", host, "-e", json.dumps(crash)))
    took = time.monotonic() - began
    text = " ".join(out.split())
    assert rc != 0, out
    # The demo's start timeout is 120 s, polled every second: the old gate polled it out.
    assert took < 120, (took, out)
    assert "sglang.service failed while the health gate waited for" in text, out
    polls = re.search(r"stopped at once, after (\d+) poll\(s\)", text)
    assert polls and int(polls.group(1)) <= 20, out
    assert "result exit-code" in text and "exit code 1" in text, out
    assert "Scheduler hit an exception: CUDA out of memory" in text, out
    assert DEMO_KEY not in out
    # systemd gives up (the start limit refuses the automatic restart), and the
    # OnFailure= hook records it.
    deadline = time.monotonic() + 60
    while unit_state(host) != {"ActiveState": "failed", "Result": "exit-code"}:
        assert time.monotonic() < deadline, unit_state(host)
        time.sleep(1)
    record = json.loads(subprocess.run(
        ["podman", "exec", host, "cat", "/var/lib/kimi-k2-toolkit/failures/sglang.service.json"],
        check=True, capture_output=True, text=True).stdout)
    assert record["result"] == "exit-code" and record["ended_with"] == "exit code 1", record
    rc, out = finish(start("status.yml", tmp_path / "locks", "--limit", host))
    assert rc == 0, out
    assert re.search(r"sglang\.service is failed \(failed, result exit-code\); last failure "
                     r"20\S+: result exit-code, exit code 1", " ".join(out.split())), out
    # The inventory's own configuration: no manual reset-failed.
    rc, out = finish(start("serve.yml", tmp_path / "locks", "--limit", host))
    assert rc == 0, out
    assert "had failed (result exit-code): this run clears its failed state" in " ".join(out.split()), out
    assert unit_state(host) == {"ActiveState": "active", "Result": "success"}


# ---- Converge to what runs (issue 14, faults 1 and 8): a run that wrote the files and
# died before the restart is finished by the next one; a hand-made drop-in is named.

UNIT_DIR = "/etc/systemd/system/sglang.service.d"


def running_command(host):
    """The running server's arguments, as its main process has them."""
    pid = subprocess.run(["podman", "exec", host, "systemctl", "show", "-P", "MainPID",
                          "sglang.service"], check=True, capture_output=True, text=True).stdout.strip()
    raw = subprocess.run(["podman", "exec", host, "cat", f"/proc/{pid}/cmdline"], check=True,
                         capture_output=True).stdout
    return raw.decode().split("\0")


def service_state(host):
    """For failure messages: the unit's restarts, start time and reload state, and the
    fingerprint the process and the environment file hold."""
    return subprocess.run(["podman", "exec", host, "sh", "-c",
                           "systemctl show -p NRestarts,ExecMainStartTimestamp,MainPID,NeedDaemonReload "
                           "sglang.service; grep FINGERPRINT /etc/sglang/sglang.env; "
                           "setpriv --reuid=sglang --regid=sglang --clear-groups cat "
                           "/proc/$(systemctl show -P MainPID sglang.service)/environ "
                           "| tr '\\0' '\\n' | grep FINGERPRINT"], capture_output=True, text=True).stdout


def test_an_interrupted_converge_is_finished_by_the_next_run(demo, tmp_path):
    change = ("--limit", "kimi-demo-2", "-e", "sglang_service_chunked_prefill_size=4096")
    # What a controller that dies between writing the unit and restarting leaves behind.
    rc, out = finish(start("serve.yml", tmp_path / "locks", "--tags", "sglang_service_configure",
                           *change))
    assert rc == 0, out
    assert "--chunked-prefill-size" not in running_command("kimi-demo-2")
    # The plan and status call it drift, and the rollout would restart and verify it.
    rc, out = finish(start("rollout.yml", tmp_path / "locks", "--check", *change,
                           "-e", "sglang_rollout_min_serving_groups=0"))
    text = " ".join(out.split())
    assert rc == 0, out
    assert "[kimi-demo-2] unchanged: none" in text, out
    assert "drift on kimi-demo-2: systemd runs an older sglang.service than the file on disk " \
        "(NeedDaemonReload=yes); the running server (pid" in text, service_state("kimi-demo-2") + out
    assert "was started from other files than the role renders now" in text, out
    rc, out = finish(start("status.yml", tmp_path / "locks", *change))
    text = " ".join(out.split())
    assert rc == 0 and "drift: systemd runs an older sglang.service" in text, out
    assert "was started from other files than the role renders now" in text, out
    # The next full run restarts it, whatever it changed itself, and verify passes.
    rc, out = finish(start("site.yml", tmp_path / "locks", *change))
    assert rc == 0, out
    assert re.search(r"Restart for changed inputs: sglang.service\] \*+\nchanged: \[kimi-demo-2\]", out), out
    command = running_command("kimi-demo-2")
    assert command[command.index("--chunked-prefill-size") + 1] == "4096"


def test_a_hand_made_drop_in_is_named_and_removed_when_asked(demo, tmp_path):
    host = "kimi-demo-1"  # Thinking: the drop-in takes its reasoning parser away
    argv = [a for a in running_command(host) if a]
    at = argv.index("--reasoning-parser")
    edited = " ".join(argv[:at] + argv[at + 2:])
    subprocess.run(["podman", "exec", host, "sh", "-c",
                    f"mkdir -p {UNIT_DIR} && printf '[Service]\\nExecStart=\\nExecStart={edited}\\n'"
                    f" > {UNIT_DIR}/x.conf && systemctl daemon-reload && systemctl restart sglang"],
                   check=True)
    # A converge reports it and leaves it (no switch); verify fails naming the cause.
    rc, out = finish(start("site.yml", tmp_path / "locks", "--limit", host))
    text = " ".join(out.split())
    assert rc != 0, out
    assert f"WARNING: sglang.service has drop-ins the toolkit did not write: {UNIT_DIR}/x.conf" in text, out
    assert (f"{host}: --reasoning-parser missing from the running command; drop-in "
            f"{UNIT_DIR}/x.conf overrides ExecStart") in text, out
    # With the switch, the role removes it and restarts: verify passes.
    rc, out = finish(start("site.yml", tmp_path / "locks", "--limit", host,
                           "-e", "sglang_service_remove_unknown_dropins=true"))
    assert rc == 0, out
    assert "--reasoning-parser" in running_command(host)
    assert subprocess.run(["podman", "exec", host, "test", "-e", f"{UNIT_DIR}/x.conf"]).returncode == 1
