"""Build a STAND-IN of NVIDIA's CUDA apt repository for GPU-less test hosts.

    python build_repo.py <out_dir> <kernel release>

The packages carry the real names, versions and dependencies of the driver stack (two
driver releases of branch 580, so an upgrade can be tested) but hold only stand-ins: the
recorded-output nvidia-smi, services that sleep, marker files. Every package says so in
its description. The repository is flat ("deb URL /") like NVIDIA's, and signed with the
committed TEST key (standin-archive-key.secret.asc), whose fingerprint the Molecule
scenario pins exactly as production pins NVIDIA's. Needs dpkg-deb, apt-ftparchive
(apt-utils) and gpg.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "nvidia-smi"
DRIVERS = ("580.95.05", "580.105.08")
CUDA = "12.8.1"
DCGM = "4.4.1"
NOTE = "STAND-IN for tests: not NVIDIA's package, no driver inside."

UNIT = """[Unit]
Description={description} (stand-in: sleeps, drives nothing)

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""


def package(out: Path, name: str, version: str, files: dict[str, str], depends: str = "",
            modes: dict[str, int] | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for path, content in files.items():
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            os.chmod(target, (modes or {}).get(path, 0o644))
        (root / "DEBIAN").mkdir()
        control = [f"Package: {name}", f"Version: {version}", "Architecture: all",
                   "Maintainer: kimi-k2 toolkit tests <tests@invalid>", "Section: misc",
                   "Priority: optional", f"Description: {NOTE}", f" Stands in for {name}."]
        if depends:
            control.insert(3, f"Depends: {depends}")
        (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root),
                        str(out / f"{name}_{version}_all.deb")],
                       check=True, capture_output=True)


def fixtures() -> dict[str, str]:
    return {f"/usr/share/nvidia-standin/fixtures/{p.relative_to(FIXTURES)}": p.read_text()
            for p in FIXTURES.rglob("*") if p.is_file()}


def build(out: Path, kernel: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    smi = (HERE / "nvidia-smi").read_text()
    for driver in DRIVERS:
        deb = f"{driver}-1"
        package(out, "nvidia-open", deb, {
            "/usr/bin/nvidia-smi": smi,
            "/usr/share/nvidia-standin/installed-version": driver + "\n",
            **fixtures()}, depends=f"nvidia-persistenced (= {deb})",
            modes={"/usr/bin/nvidia-smi": 0o755})
        package(out, "nvidia-persistenced", deb, {
            "/lib/systemd/system/nvidia-persistenced.service":
                UNIT.format(description="NVIDIA Persistence Daemon")})
        package(out, "nvidia-fabricmanager", deb, {
            "/lib/systemd/system/nvidia-fabricmanager.service":
                UNIT.format(description="NVIDIA fabric manager service")})
        package(out, "libnvidia-nscq", deb, {
            "/usr/share/doc/libnvidia-nscq/STANDIN": NOTE + "\n"})
    package(out, "datacenter-gpu-manager-4-cuda12", f"{DCGM}-1", {
        "/lib/systemd/system/nvidia-dcgm.service":
            UNIT.format(description="NVIDIA DCGM service")})
    package(out, "datacenter-gpu-manager-exporter", f"{DCGM}-1", {
        "/lib/systemd/system/nvidia-dcgm-exporter.service":
            UNIT.format(description="NVIDIA DCGM exporter")},
        depends="datacenter-gpu-manager-4-cuda12")
    major_minor = ".".join(CUDA.split(".")[:2])
    package(out, f"cuda-toolkit-{major_minor.replace('.', '-')}", f"{CUDA}-1", {
        f"/usr/local/cuda-{major_minor}/bin/nvcc":
            f"#!/bin/sh\necho 'nvcc stand-in: Cuda compilation tools, release {major_minor}, "
            f"V{CUDA}'\n",
        f"/usr/local/cuda-{major_minor}/lib64/STANDIN": NOTE + "\n"},
        modes={f"/usr/local/cuda-{major_minor}/bin/nvcc": 0o755})
    package(out, f"linux-headers-{kernel}", "1.0-standin", {
        f"/usr/src/linux-headers-{kernel}/STANDIN": NOTE + "\n"})
    index(out)


def index(out: Path) -> None:
    """Packages, Release, and the signatures apt checks (InRelease, Release.gpg)."""
    packages = subprocess.run(["apt-ftparchive", "packages", "."], cwd=out, check=True,
                              capture_output=True, text=True).stdout
    (out / "Packages").write_text(packages)
    subprocess.run(["gzip", "-kf9n", "Packages"], cwd=out, check=True)
    release = subprocess.run(
        ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=NVIDIA stand-in",
         "-o", "APT::FTPArchive::Release::Label=NVIDIA CUDA stand-in (tests)", "release", "."],
        cwd=out, check=True, capture_output=True, text=True).stdout
    (out / "Release").write_text(release)
    home = tempfile.mkdtemp()
    try:
        gpg = ["gpg", "--batch", "--quiet", "--homedir", home]
        subprocess.run(gpg + ["--import", str(HERE / "standin-archive-key.secret.asc")],
                       check=True, capture_output=True)
        subprocess.run(gpg + ["--yes", "--clearsign", "-o", str(out / "InRelease"),
                              str(out / "Release")], check=True)
        subprocess.run(gpg + ["--yes", "--armor", "--detach-sign", "-o",
                              str(out / "Release.gpg"), str(out / "Release")], check=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    shutil.copy(HERE / "standin-archive-key.pub.asc", out / "standin-archive-key.pub.asc")


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2])
