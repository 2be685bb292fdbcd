"""The driver stack's package naming and hold logic (plugins/filter/nvidia_stack.py), the
nvidia-smi parsers and the GPU preflight's judgement (plugins/module_utils/nvidia_smi.py) against
recorded H200 output, and the nvidia-smi stand-in the Molecule hosts use."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

from ansible_collections.kimi_k2.sglang.plugins.filter import nvidia_stack as stack
from ansible_collections.kimi_k2.sglang.plugins.module_utils import nvidia_smi

FIXTURES = ROOT / "tests" / "fixtures" / "nvidia-smi"


@pytest.mark.parametrize("version, modules, nvswitch, expected", [
    ("570.195.03", "open", True, ["nvidia-open-570=570.195.03-1",
                                  "nvidia-fabricmanager-570=570.195.03-1",
                                  "libnvidia-nscq-570=570.195.03-1"]),
    ("570.195.03", "proprietary", False, ["cuda-drivers-570=570.195.03-1"]),
    ("580.95.05", "open", True, ["nvidia-open=580.95.05-1", "nvidia-fabricmanager=580.95.05-1",
                                 "libnvidia-nscq=580.95.05-1"]),
    ("580.105.08", "proprietary", True, ["cuda-drivers=580.105.08-1",
                                         "nvidia-fabricmanager=580.105.08-1",
                                         "libnvidia-nscq=580.105.08-1"]),
    ("590.44.01", "open", False, ["nvidia-open=590.44.01-1"]),
])
def test_package_names_follow_the_branch(version, modules, nvswitch, expected):
    packages = stack.nvidia_driver_packages(version, modules, nvswitch)
    assert packages["all"] == expected
    assert packages["names"] == [p.split("=")[0] for p in expected]
    assert packages["branch"] == int(version.split(".")[0])


def test_fabric_manager_is_exactly_the_driver_version():
    packages = stack.nvidia_driver_packages("580.95.05", "open", True, revision="1")
    versions = {p.split("=")[1] for p in packages["all"]}
    assert versions == {"580.95.05-1"}


@pytest.mark.parametrize("version, model, needle", [
    ("580", "H200", "not an exact driver version"),
    ("latest", "H200", "not an exact driver version"),
    ("535.261.03", "H200", "H200 needs branch 550 or newer"),
])
def test_bad_versions_are_refused_with_the_fix(version, model, needle):
    problems = stack.nvidia_driver_version_problems(version, model)
    assert problems and needle in problems[0]


def test_good_versions_pass():
    assert stack.nvidia_driver_version_problems("580.95.05", "H200") == []
    assert stack.nvidia_driver_version_problems("570.195.03", "H200") == []


def test_the_whole_installed_stack_is_held():
    packages = {
        "nvidia-open": [{"version": "580.95.05-1"}],
        "libnvidia-compute-580": [{"version": "580.95.05-0ubuntu1"}],  # same driver, held too
        "nvidia-kernel-open-dkms": [{"version": "580.95.05-1"}],
        "nvidia-fabricmanager": [{"version": "580.95.05-1"}],
        "nvidia-fabricmanager-570": [{"version": "570.195.03-1"}],
        "cuda-toolkit-12-8": [{"version": "12.8.1-1"}],
    }
    assert stack.nvidia_stack_installed(packages, "580.95.05") == [
        "libnvidia-compute-580", "nvidia-fabricmanager", "nvidia-kernel-open-dkms",
        "nvidia-open"]


@pytest.mark.parametrize("raw, enabled", [
    (b"\x06\x00\x00\x00\x01", True), (b"\x06\x00\x00\x00\x00", False), (b"", False)])
def test_secure_boot_is_read_from_its_efi_variable(raw, enabled):
    import base64
    assert stack.nvidia_secure_boot_enabled(base64.b64encode(raw).decode()) is enabled


def fixture_facts(state, loaded="580.95.05", installed="580.95.05", fm="active"):
    folder = FIXTURES / state
    csv = (folder / "query-gpu.csv").read_text().replace("@DRIVER_VERSION@", loaded)
    q = (folder / "q.txt").read_text().replace("@DRIVER_VERSION@", loaded)
    return {"gpus": nvidia_smi.parse_query_csv(csv), "q": nvidia_smi.parse_q(q),
            "smi_error": "", "loaded_version": loaded, "installed_version": installed,
            "fabricmanager_state": fm, "nvswitch_count": 6, "free_bytes": 2 * 10**12,
            "free_path": "/var/lib"}


EXPECT = {"gpu_count": 8, "gpu_model": "H200", "memory_mib": 143771,
          "driver_version": "580.95.05", "nvswitch": True, "free_bytes_required": 12 * 10**11}


def test_the_parsers_read_every_gpu():
    facts = fixture_facts("healthy")
    assert len(facts["gpus"]) == 8
    first = facts["gpus"][0]
    assert first["name"] == "NVIDIA H200" and first["memory.total"] == "143771"
    assert first["pci.bus_id"] == "00000000:18:00.0"
    detail = facts["q"]["gpus"]["00000000:18:00.0"]
    assert detail["Fabric"]["State"] == "Completed"
    assert detail["Fabric"]["Health"]["Bandwidth"] == "Full"
    assert detail["Remapped Rows"]["Pending"] == "No"
    assert detail["FB Memory Usage"]["Total"] == "143771 MiB"
    assert facts["q"]["Driver Version"] == "580.95.05"


def test_a_healthy_h200_node_passes():
    assert nvidia_smi.gpu_problems(fixture_facts("healthy"), EXPECT) == []


@pytest.mark.parametrize("state, kwargs, needle", [
    ("seven-gpus", {}, "7 GPUs visible, expected 8"),
    ("fabric-in-progress", {}, "fabric state is In Progress"),
    ("fabric-manager-down", {"fm": "inactive"}, "nvidia-fabricmanager is inactive"),
    ("persistence-off", {}, "persistence mode is Disabled"),
    ("ecc-errors", {}, "uncorrected volatile ECC errors"),
    ("ecc-errors", {}, "remapped rows pending"),
    ("healthy", {"loaded": "580.82.07"}, "runs driver 580.82.07, pinned is 580.95.05"),
    ("healthy", {"loaded": "580.82.07"}, "loaded kernel module is 580.82.07 but the installed"),
])
def test_each_broken_state_fails_naming_the_problem(state, kwargs, needle):
    problems = nvidia_smi.gpu_problems(fixture_facts(state, **kwargs), EXPECT)
    assert any(needle in p for p in problems), problems


@pytest.mark.parametrize("state, status", [("In Progress", "Success"),
                                           ("Completed", "Failure")])
def test_fabric_needs_both_completed_and_success(state, status):
    facts = fixture_facts("healthy")
    facts["q"]["gpus"]["00000000:2A:00.0"]["Fabric"].update(State=state, Status=status)
    problems = nvidia_smi.gpu_problems(facts, EXPECT)
    assert problems == [f"GPU 1 (00000000:2A:00.0) fabric state is {state} (status {status}), "
                        "not Completed: NVLink is not ready; check nvidia-fabricmanager"]


def test_a_driver_library_mismatch_says_reboot():
    error = (FIXTURES / "driver-mismatch" / "error.txt").read_text()
    facts = {"smi_error": error, "loaded_version": "580.95.05",
             "installed_version": "580.105.08"}
    [problem] = nvidia_smi.gpu_problems(facts, EXPECT)
    assert "Driver/library version mismatch" in problem and "reboot" in problem


def test_too_little_disk_is_named():
    facts = {**fixture_facts("healthy"), "free_bytes": 500 * 2**30}
    [problem] = nvidia_smi.gpu_problems(facts, EXPECT)
    assert "500 GiB free at /var/lib" in problem


@pytest.fixture
def standin_root(tmp_path):
    """The stand-in's files, relocated under tmp_path by rewriting its absolute paths."""
    script = (ROOT / "tests" / "gpu_standins" / "nvidia-smi").read_text()
    script = script.replace("/usr/share/nvidia-standin/fixtures", str(FIXTURES))
    script = script.replace("/etc/nvidia-standin", str(tmp_path / "etc"))
    script = script.replace("/usr/share/nvidia-standin", str(tmp_path / "share"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "share").mkdir()
    (tmp_path / "nvidia-smi").write_text(script)
    return tmp_path


def standin(root, *args):
    return subprocess.run([sys.executable, str(root / "nvidia-smi"), *args],
                          capture_output=True, text=True, env={**os.environ})


def test_the_standin_prints_what_the_parsers_read(standin_root):
    (standin_root / "etc" / "loaded-version").write_text("580.95.05\n")
    (standin_root / "share" / "installed-version").write_text("580.95.05\n")
    out = standin(standin_root, "--query-gpu=" + ",".join(nvidia_smi.QUERY_FIELDS),
                  "--format=csv,noheader,nounits")
    assert out.returncode == 0
    assert len(nvidia_smi.parse_query_csv(out.stdout)) == 8
    (standin_root / "share" / "installed-version").write_text("580.105.08\n")
    out = standin(standin_root, "-q")
    assert out.returncode == 18 and "Driver/library version mismatch" in out.stdout
