"""The gateways' flag manifests are what their real parsers say.

manifests/router/<package>-<version>.json is written by tools/gen_router_manifest.py from
the pinned wheel (`make router-manifests`). Here each is dumped afresh from the wheel the
Makefile downloads for the test hosts (build/wheelhouse-smg, build/wheelhouse-router;
`make unit` fetches both first) and must equal the committed one: a flag the role renders
is checked against exactly what that gateway's parser accepts.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

WHEELS = {"smg-1.13.0": ("wheelhouse-smg", "smg-1.13.0-*.whl"),
          "sglang-router-0.3.2": ("wheelhouse-router", "sglang_router-0.3.2-*.whl")}


def test_every_committed_manifest_has_a_wheel_to_check_it_against():
    assert sorted(p.stem for p in (ROOT / "manifests" / "router").glob("*.json")) == sorted(WHEELS)


@pytest.mark.parametrize("name", sorted(WHEELS))
def test_a_fresh_dump_of_the_wheel_equals_the_committed_manifest(name):
    folder, pattern = WHEELS[name]
    wheels = sorted((ROOT / "build" / folder).glob(pattern))
    if not wheels:
        pytest.skip(f"no {pattern} in build/{folder}: `make unit` downloads it")
    fresh = subprocess.run([sys.executable, str(ROOT / "tools" / "gen_router_manifest.py"),
                            str(wheels[0])], check=True, capture_output=True, text=True).stdout
    committed = (ROOT / "manifests" / "router" / f"{name}.json").read_text()
    assert json.loads(fresh) == json.loads(committed), (
        f"manifests/router/{name}.json is not what the wheel's parser says: `make router-manifests`")
    assert fresh == committed
