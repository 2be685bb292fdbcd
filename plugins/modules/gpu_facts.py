#!/usr/bin/python
"""Ansible module: what a GPU host's driver stack reports about itself. Reads only."""
from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_facts
short_description: Collect GPU, driver, fabric and disk facts from nvidia-smi and the system
description:
  - Runs C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits) and C(nvidia-smi -q),
    reads the loaded kernel module's version, the installed driver package's version, the
    fabric manager's state, the NVSwitch device count, the free space at C(free_path) and
    every RDMA device's ports from C(infiniband_path) (state, physical state, link layer, rate).
  - When nvidia-smi fails (no module loaded, or the driver/library version mismatch a
    driver upgraded under a running kernel gives), returns its message as C(smi_error)
    instead of failing, so the caller can say what to do.
  - Judging the facts is the gpu_preflight_problems filter's job.
options:
  nvidia_smi: {description: nvidia-smi to run., type: str, default: nvidia-smi}
  driver_package: {description: The driver package whose installed version to read., type: str, required: true}
  loaded_version_path: {description: File holding the loaded module's version., type: path, default: /sys/module/nvidia/version}
  nvswitch_devices_path: {description: Directory listing NVSwitch devices., type: path, default: /proc/driver/nvidia-nvswitch/devices}
  free_path: {description: Filesystem to measure free space on (the model cache)., type: path, default: /var/lib}
  infiniband_path: {description: The kernel's InfiniBand class directory (RDMA devices)., type: path, default: /sys/class/infiniband}
"""

EXAMPLES = r"""
- name: Read the GPUs, the driver, the fabric and the model cache's free space
  kimi_k2.sglang.gpu_facts:
    driver_package: nvidia-open
    free_path: /srv/models
  register: gpu

- name: Say what nvidia-smi could not
  ansible.builtin.debug:
    msg: "{{ gpu.smi_error }}"
  when: gpu.smi_error
"""

RETURN = r"""
gpus: {description: One dict per GPU (QUERY_FIELDS of plugins/module_utils/nvidia_smi.py)., type: list, returned: always}
q: {description: nvidia-smi -q parsed (gpus by PCI bus id)., type: dict, returned: always}
smi_error: {description: nvidia-smi's message when it failed., type: str, returned: always}
loaded_version: {description: Loaded kernel module version, empty if none., type: str, returned: always}
installed_version: {description: Installed driver version (no Debian revision)., type: str, returned: always}
fabricmanager_state: {description: systemctl is-active nvidia-fabricmanager., type: str, returned: always}
nvswitch_count: {description: NVSwitch devices found., type: int, returned: always}
free_bytes: {description: Free bytes at free_path., type: int, returned: always}
rdma: {description: "RDMA devices: {device: {port: {state, phys_state, link_layer, rate}}}.", type: dict, returned: always}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.nvidia_smi import QUERY_FIELDS, parse_q, parse_query_csv
from ansible_collections.kimi_k2.sglang.plugins.module_utils.rdma import read_infiniband


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "driver_package": {"type": "str", "required": True},
            "loaded_version_path": {"type": "path", "default": "/sys/module/nvidia/version"},
            "nvswitch_devices_path": {"type": "path",
                                      "default": "/proc/driver/nvidia-nvswitch/devices"},
            "free_path": {"type": "path", "default": "/var/lib"},
            "infiniband_path": {"type": "path", "default": "/sys/class/infiniband"},
        },
        supports_check_mode=True,
    )
    p = module.params
    out = {"changed": False, "gpus": [], "q": {}, "smi_error": ""}
    rc, stdout, stderr = module.run_command(
        [p["nvidia_smi"], "--query-gpu=" + ",".join(QUERY_FIELDS),
         "--format=csv,noheader,nounits"])
    if rc != 0:
        out["smi_error"] = (stdout + stderr).strip() or f"exit status {rc}"
    else:
        try:
            out["gpus"] = parse_query_csv(stdout)
            rc, stdout, stderr = module.run_command([p["nvidia_smi"], "-q"])
            out["q"] = parse_q(stdout) if rc == 0 else {}
        except ValueError as err:
            out["smi_error"] = str(err)
    out["loaded_version"] = _read(p["loaded_version_path"])
    rc, stdout, _ = module.run_command(
        ["dpkg-query", "-W", "-f", "${Version}", p["driver_package"]])
    out["installed_version"] = stdout.strip().rsplit("-", 1)[0] if rc == 0 else ""
    rc, stdout, _ = module.run_command(["systemctl", "is-active", "nvidia-fabricmanager"])
    out["fabricmanager_state"] = stdout.strip() or "unknown"
    devices = p["nvswitch_devices_path"]
    out["nvswitch_count"] = len(os.listdir(devices)) if os.path.isdir(devices) else 0
    stat = os.statvfs(p["free_path"] if os.path.exists(p["free_path"]) else "/")
    out["free_path"] = p["free_path"]
    out["free_bytes"] = stat.f_bavail * stat.f_frsize
    out["rdma"] = read_infiniband(p["infiniband_path"])
    module.exit_json(**out)


if __name__ == "__main__":
    main()
