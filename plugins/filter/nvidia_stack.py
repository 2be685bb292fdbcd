"""NVIDIA driver stack: version -> branch -> package names, and which installed packages
make up the stack (to hold them). Pure functions, unit-tested.

NVIDIA's CUDA apt repository names the driver and its companions per branch up to 570
(nvidia-open-570, nvidia-fabricmanager-570, libnvidia-nscq-570) and without the branch
from 580 on (nvidia-open, nvidia-fabricmanager, libnvidia-nscq), always versioned
<driver version>-<revision>. Fabric manager and NSCQ must match the driver EXACTLY:
one patch version apart and CUDA fails with error 802 (system not yet initialized).
"""
from __future__ import annotations

import base64
import re
from typing import Any

from ansible.errors import AnsibleFilterError

UNVERSIONED_FROM_BRANCH = 580
# H200 support starts with the R550 driver (CUDA 12.4).
MIN_BRANCH = {"H200": 550, "H100": 525, "H20": 550, "B200": 570}
KERNEL_MODULES = ("open", "proprietary")
_VERSION = re.compile(r"^(\d{3})\.(\d{2,3})(\.\d{2,3})?$")


def nvidia_driver_version_problems(version: Any, gpu_model: str = "H200") -> list[str]:
    """Why a driver version cannot be pinned on this hardware (empty: it can)."""
    match = _VERSION.match(str(version or ""))
    if not match:
        return [f"nvidia_driver_version {version!r} is not an exact driver version: set it "
                "like 580.95.05 (branch.minor.patch), as `apt-cache madison nvidia-open` "
                "lists it"]
    branch = int(match.group(1))
    minimum = MIN_BRANCH.get(gpu_model)
    if minimum and branch < minimum:
        return [f"nvidia_driver_version {version} is branch {branch}, but {gpu_model} needs "
                f"branch {minimum} or newer: pick a newer driver"]
    return []


def nvidia_driver_branch(version: str) -> int:
    match = _VERSION.match(str(version))
    if not match:
        raise AnsibleFilterError(f"not a driver version: {version!r}")
    return int(match.group(1))


def nvidia_driver_packages(version: str, kernel_modules: str = "open", nvswitch: bool = True,
                           revision: str = "1") -> dict[str, Any]:
    """The packages to install, each pinned to version-revision, by role.

    Returns {"driver": [...], "fabric": [...], "all": [...], "names": [...]} where each
    entry is "name=version" as apt takes it."""
    if kernel_modules not in KERNEL_MODULES:
        raise AnsibleFilterError(f"nvidia_driver_kernel_modules must be one of "
                                 f"{', '.join(KERNEL_MODULES)}, got {kernel_modules!r}")
    branch = nvidia_driver_branch(version)
    suffix = "" if branch >= UNVERSIONED_FROM_BRANCH else f"-{branch}"
    driver = ("nvidia-open" if kernel_modules == "open" else "cuda-drivers") + suffix
    fabric = [f"nvidia-fabricmanager{suffix}", f"libnvidia-nscq{suffix}"] if nvswitch else []
    full = f"{version}-{revision}"
    pinned = {"driver": [f"{driver}={full}"], "fabric": [f"{name}={full}" for name in fabric]}
    names = [driver] + fabric
    return {**pinned, "all": pinned["driver"] + pinned["fabric"], "names": names,
            "branch": branch, "deb_version": full}


def nvidia_stack_installed(packages: dict[str, list[dict[str, Any]]], version: str
                           ) -> list[str]:
    """Installed packages built from this driver version (from package_facts): the whole
    stack, libraries and kernel module packages included, so that holding them holds all.
    The meta package alone would not stop `apt upgrade` moving its dependencies."""
    prefix = f"{version}-"
    return sorted(name for name, versions in (packages or {}).items()
                  if any(str(v.get("version", "")).startswith(prefix) for v in versions))


def nvidia_secure_boot_enabled(efivar_b64: str | None) -> bool:
    """Secure Boot's EFI variable, base64 as slurp returns it: 4 attribute bytes, then
    the state byte (1: enforcing). What `mokutil --sb-state` reads."""
    if not efivar_b64:
        return False
    data = base64.b64decode(efivar_b64)
    return len(data) >= 5 and data[-1] == 1


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"nvidia_driver_version_problems": nvidia_driver_version_problems,
                "nvidia_driver_branch": nvidia_driver_branch,
                "nvidia_driver_packages": nvidia_driver_packages,
                "nvidia_stack_installed": nvidia_stack_installed,
                "nvidia_secure_boot_enabled": nvidia_secure_boot_enabled}
