"""Filters of the model_weights role: settings checks, peer topology, progress lines."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

SOURCES = ("hub", "peer", "path")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _settings(hostvars: Mapping[str, Any], host: str) -> Mapping[str, Any]:
    """A host's effective settings, as the role's preflight published them."""
    return hostvars[host].get("__model_weights_settings") or {}


def model_weights_problems(me: str, hostvars: Mapping[str, Any], play_hosts: Sequence[str]) -> list[str]:
    """What is wrong with host `me`'s settings, each naming the variable and the fix."""
    v = _settings(hostvars, me)
    problems = []
    repo_id, revision = v.get("repo_id"), v.get("revision")
    if not repo_id or not _REPO_ID.match(str(repo_id)):
        problems.append("model_weights_repo_id must be a Hub repository id like "
                        "moonshotai/Kimi-K2-Instruct, got %r" % (repo_id,))
    if not revision or not _COMMIT.match(str(revision)):
        problems.append("model_weights_revision must be the full 40-character commit sha of the "
                        "revision (a branch or tag moves under a fleet), got %r" % (revision,))
    source = v.get("source")
    if source not in SOURCES:
        problems.append("model_weights_source must be one of %s, got %r" % (", ".join(SOURCES), source))
    if source == "path" and not str(v.get("path") or "").startswith("/"):
        problems.append("model_weights_source is path: set model_weights_path to the absolute "
                        "path of the mounted mirror's directory for this revision")
    if source == "peer":
        problems += _peer_problems(me, v, hostvars, play_hosts)
    for name, low in (("free_space_margin_gib", 0), ("peer_streams", 1), ("hub_max_workers", 1),
                      ("progress_interval", 1), ("timeout", 1)):
        try:
            ok = int(v.get(name)) >= low
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append("model_weights_%s must be a whole number >= %d, got %r" % (name, low, v.get(name)))
    return problems


def _peer_problems(me: str, v: Mapping[str, Any], hostvars: Mapping[str, Any],
                   play_hosts: Sequence[str]) -> list[str]:
    peer = v.get("peer") or ""
    if peer == me:
        return ["model_weights_peer names this host itself; set its model_weights_source to "
                "hub or path instead"]
    if peer not in play_hosts:
        return ["model_weights_source is peer: set model_weights_peer to a host of this play "
                "that stages by hub or path, got %r" % (peer,)]
    pv = _settings(hostvars, peer)
    problems = []
    if pv.get("source") == "peer":
        problems.append("model_weights_peer %s copies from a peer itself; point this host at a "
                        "host that stages by hub or path" % peer)
    if (pv.get("repo_id"), pv.get("revision")) != (v.get("repo_id"), v.get("revision")):
        problems.append("model_weights_peer %s stages %s@%s, not %s@%s: peers copy the same "
                        "revision" % (peer, pv.get("repo_id"), pv.get("revision"),
                                      v.get("repo_id"), v.get("revision")))
    return problems


def model_weights_peers_of(hostvars: Mapping[str, Any], play_hosts: Sequence[str], me: str) -> list[str]:
    """The hosts of the play that copy from `me`."""
    return [h for h in play_hosts
            if _settings(hostvars, h).get("source") == "peer" and _settings(hostvars, h).get("peer") == me]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return "%.1f %s" % (n, unit)
        n /= 1024.0
    return "%.1f TiB" % n


def model_weights_progress_line(p: Mapping[str, Any]) -> str:
    """'hub running: 12.0 GiB of 958.0 GiB (1%), 850.0 MiB/s, ETA 18 min'."""
    total = p.get("total_bytes") or 0
    done = p.get("done_bytes") or 0
    pct = 100.0 * done / total if total else 100.0
    eta = p.get("eta")
    if p.get("state") != "running":
        eta_text = ""
    elif eta is None:
        eta_text = ", ETA unknown"
    else:
        eta_text = ", ETA %d min" % round(eta / 60.0)
    return "%s %s: %s of %s (%d%%), %s/s%s, %d s elapsed" % (
        p.get("method"), p.get("state"), _size(done), _size(total), pct,
        _size(p.get("rate_bytes") or 0), eta_text, p.get("elapsed") or 0)


def model_weights_size(n: Any) -> str:
    return _size(float(n or 0))


class FilterModule:
    def filters(self):
        return {
            "model_weights_problems": model_weights_problems,
            "model_weights_peers_of": model_weights_peers_of,
            "model_weights_progress_line": model_weights_progress_line,
            "model_weights_size": model_weights_size,
        }
