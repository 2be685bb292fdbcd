"""Filters of the model_weights role: settings checks, the copy tree, progress lines."""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ansible.errors import AnsibleFilterError

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
    for name, low in (("free_space_margin_gib", 0), ("peer_streams", 1), ("peer_fanout", 1),
                      ("hub_max_workers", 1), ("progress_interval", 1), ("timeout", 1),
                      ("follow_timeout", 1)):
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
    # One tree, one shape: a per-host value would be silently ignored otherwise.
    if str(pv.get("peer_fanout")) != str(v.get("peer_fanout")):
        problems.append("model_weights_peer_fanout is %s here but %s on model_weights_peer %s: "
                        "the hosts of one copy tree share it; set it for the whole group"
                        % (v.get("peer_fanout"), pv.get("peer_fanout"), peer))
    return problems


def _tree_of(hostvars: Mapping[str, Any], play_hosts: Sequence[str], root: str) -> list[str]:
    """A copy tree's hosts in play order: its root (which stages by hub or path) first,
    then every host whose model_weights_peer names the root."""
    return [root] + [h for h in play_hosts if h != root and _settings(hostvars, h).get("source") == "peer"
                     and _settings(hostvars, h).get("peer") == root]


def model_weights_peers_of(hostvars: Mapping[str, Any], play_hosts: Sequence[str], me: str) -> list[str]:
    """The hosts that may copy from `me`: the rest of its copy tree. Which of them does in
    a given run depends on which copies are verified, so the rsync daemon is open to all
    of them and its configuration does not change from run to run."""
    v = _settings(hostvars, me)
    root = v.get("peer") if v.get("source") == "peer" else me
    if root not in play_hosts:
        return []
    return [h for h in _tree_of(hostvars, play_hosts, root) if h != me]


def model_weights_fanout_tree(hosts: Sequence[str], seeds: Sequence[str], fanout: int) -> dict[str, dict[str, Any]]:
    """Who copies from whom: {host: {"wave": n, "source": host or ""}}, "wave" being the
    host's depth in the copy tree (hops from a seed).

    Seeds (the host that stages by hub or path, and hosts whose copy is verified already)
    are depth 0 with no source. The tree is built in rounds: in each, every host placed so
    far (a seed, or a host of an earlier round) takes up to `fanout` hosts that have none,
    in host order; so with fanout 1 the hosts double each round and N hosts from one seed
    are ceil(log2 N) deep. The role runs every copy of the tree at once, each following
    its source file by file, so a host with k children sends k copies at a time.
    """
    if isinstance(fanout, bool) or not isinstance(fanout, int) or fanout < 1:
        raise AnsibleFilterError("model_weights_peer_fanout must be a whole number >= 1, got %r" % (fanout,))
    if len(set(hosts)) != len(hosts):
        raise AnsibleFilterError("a host appears twice in the copy tree: %s" % ", ".join(hosts))
    holders = [h for h in hosts if h in seeds]
    pending = [h for h in hosts if h not in seeds]
    if pending and not holders:
        raise AnsibleFilterError("no host of %s has or stages a copy to give" % ", ".join(hosts))
    plan = {h: {"wave": 0, "source": ""} for h in holders}
    wave = 0
    while pending:
        wave += 1
        served = []
        for source in holders:
            for host in pending[:fanout]:
                plan[host] = {"wave": wave, "source": source}
                served.append(host)
            pending = pending[fanout:]
        # Hosts placed in this round take children of their own from the next.
        holders = holders + served
    return plan


def model_weights_plan(hostvars: Mapping[str, Any], hosts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The copy plan of the hosts running now (the play's batch): each one's {wave, source}.

    A host that stages by hub or path is the root of its copy tree and stages in wave 0;
    the peers naming it fill the later waves, those whose copy is verified already
    (__model_weights_state, the role's cheap check) counting as further seeds. A root that
    is not running now (another batch, or it failed) still seeds its tree: its copy must
    be verified already, and the peer copying from it checks that first. The shape is the
    tree's model_weights_peer_fanout (the preflight makes it the same on all its hosts).
    """
    roots = []
    for host in hosts:
        v = _settings(hostvars, host)
        root = v.get("peer") if v.get("source") == "peer" else host
        if root not in roots:
            roots.append(root)
    plan: dict[str, dict[str, Any]] = {}
    for root in roots:
        tree = _tree_of(hostvars, hosts, root)
        seeds = [root] + [h for h in tree[1:]
                          if (hostvars[h].get("__model_weights_state") or {}).get("verified")]
        fanout = (_settings(hostvars, root) or _settings(hostvars, tree[-1])).get("peer_fanout", 1)
        plan.update({h: step for h, step in model_weights_fanout_tree(tree, seeds, int(fanout)).items()
                     if h in hosts})
    return plan


def model_weights_plan_lines(plan: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """'depth 1: weights-1 -> weights-2' lines, one per depth of the tree, for the play's
    output (every copy runs at once; depth is how many hops from the Hub or mirror)."""
    waves: dict[int, list[str]] = {}
    for host, step in plan.items():
        if step["wave"] > 0:
            waves.setdefault(step["wave"], []).append("%s -> %s" % (step["source"], host))
    return ["depth %d: %s" % (w, ", ".join(waves[w])) for w in sorted(waves)] or ["no peer copies to make"]


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
    method = p.get("method")
    if p.get("upstream"):
        method = "%s %s (%s of %s files)" % (method, p["upstream"], p.get("files_done", 0),
                                             p.get("files_total", "?"))
    return "%s %s: %s of %s (%d%%), %s/s%s, %d s elapsed" % (
        method, p.get("state"), _size(done), _size(total), pct,
        _size(p.get("rate_bytes") or 0), eta_text, p.get("elapsed") or 0)


def model_weights_size(n: Any) -> str:
    return _size(float(n or 0))


class FilterModule:
    def filters(self):
        return {
            "model_weights_problems": model_weights_problems,
            "model_weights_peers_of": model_weights_peers_of,
            "model_weights_fanout_tree": model_weights_fanout_tree,
            "model_weights_plan": model_weights_plan,
            "model_weights_plan_lines": model_weights_plan_lines,
            "model_weights_progress_line": model_weights_progress_line,
            "model_weights_size": model_weights_size,
        }
