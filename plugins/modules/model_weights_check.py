#!/usr/bin/python
"""Ansible module: is a staged model copy complete; repair what is not; mark it verified."""
from __future__ import annotations

DOCUMENTATION = r"""
module: model_weights_check
short_description: Check a staged model copy, repair it, and write its verified marker
description:
  - Without C(manifest), the cheap check of a copy verified before - its marker names this
    repo and revision and every file it lists has its size.
  - With C(manifest), every file is checked - present, its size, each safetensors shard
    against its own header, the index against the file list, and sha256 against the
    source's when C(sha256) is set. C(repair) removes what is wrong, and the marker, so the
    next transfer fetches it again; files that are only short stay when C(keep_short) is
    set (a transfer that appends resumes them).
  - C(finalize) needs a complete copy - it gives it to C(owner):C(group) read-only, then
    writes the marker, last, so an interrupted copy never looks verified.
  - Also returns the bytes still needed and the free bytes on the target filesystem.
options:
  dest: {description: The copy's directory., type: path, required: true}
  repo_id: {description: Hub repository id., type: str, required: true}
  revision: {description: Commit sha of the revision., type: str, required: true}
  manifest: {description: What a complete copy holds (model_weights_manifest)., type: dict}
  sha256: {description: Also compare sha256 where the manifest has it (reads every byte)., type: bool, default: false}
  repair: {description: Remove wrong files, a stale marker and the hf client's abandoned partial files., type: bool, default: false}
  keep_short: {description: With repair, keep files that are only short., type: bool, default: false}
  finalize: {description: Set ownership and modes, then write the marker., type: bool, default: false}
  source: {description: Recorded in the marker (hub, peer or path)., type: str, default: ""}
  origin: {description: Recorded in the marker - the peer host, mirror path or Hub URL the copy came from., type: str, default: ""}
  wave: {description: Recorded in the marker - the copy's depth in the copy tree (0 for hub or path, 1 for a copy from the root, ...)., type: int, default: 0}
  owner: {description: Owner of the verified copy., type: str, default: root}
  group: {description: Group of the verified copy., type: str, default: root}
"""

EXAMPLES = r"""
- name: Check a copy against the Hub's file list and remove what is wrong
  kimi_k2.sglang.model_weights_check:
    dest: /srv/models/moonshotai/Kimi-K2-Instruct/0123456789abcdef0123456789abcdef01234567
    repo_id: moonshotai/Kimi-K2-Instruct
    revision: 0123456789abcdef0123456789abcdef01234567
    manifest: "{{ __model_weights_manifest }}"
    repair: true
"""

RETURN = r"""
verified:
  description: The copy is complete (and, after finalize, marked).
  type: bool
  returned: always
reason:
  description: Why the cheap check passed or failed.
  type: str
  returned: without manifest
missing:
  description: Files absent.
  type: list
  returned: with manifest
short:
  description: Files shorter than the source's.
  type: list
  returned: with manifest
bad:
  description: Files that are wrong, each with path and reason.
  type: list
  returned: with manifest
removed:
  description: Files repair removed.
  type: list
  returned: with manifest
needed_bytes:
  description: Bytes still to transfer.
  type: int
  returned: with manifest
free_bytes:
  description: Free bytes on the target filesystem.
  type: int
  returned: always
"""

import grp
import os
import pwd

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.model_weights import (MARKER, check, free_bytes, marker_is_valid,
                                                write_marker)


def _remove(dest, rel):
    """A file and the hf client's download metadata for it (else it trusts the file)."""
    for path in (os.path.join(dest, rel),
                 os.path.join(dest, ".cache", "huggingface", "download", rel + ".metadata")):
        if os.path.lexists(path):
            os.unlink(path)


def _stale_partials(dest):
    """The hf client's *.incomplete files: a new process never resumes them (each has a
    random suffix), so once no download runs they only hold disk space."""
    root = os.path.join(dest, ".cache", "huggingface", "download")
    found = []
    for parent, _dirs, files in os.walk(root):
        found += [os.path.join(parent, f) for f in files if f.endswith(".incomplete")]
    return found


def _hand_over(dest, uid, gid):
    """The verified copy belongs to the service user, who can only read it."""
    for root, dirs, files in os.walk(dest):
        for name in files:
            path = os.path.join(root, name)
            os.chown(path, uid, gid)
            os.chmod(path, 0o440)
        os.chown(root, uid, gid)
        os.chmod(root, 0o550)


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "repo_id": {"type": "str", "required": True},
            "revision": {"type": "str", "required": True},
            "manifest": {"type": "dict"},
            "sha256": {"type": "bool", "default": False},
            "repair": {"type": "bool", "default": False},
            "keep_short": {"type": "bool", "default": False},
            "finalize": {"type": "bool", "default": False},
            "source": {"type": "str", "default": ""},
            "origin": {"type": "str", "default": ""},
            "wave": {"type": "int", "default": 0},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
        },
        supports_check_mode=True,
    )
    p = module.params
    dest, manifest = p["dest"], p["manifest"]
    if manifest is None:
        exists = os.path.isdir(dest)
        valid, reason = marker_is_valid(dest, p["repo_id"], p["revision"]) if exists else (
            False, "not staged yet")
        module.exit_json(changed=False, verified=valid, reason=reason, free_bytes=free_bytes(dest))

    state = check(dest, manifest, sha256=p["sha256"]) if os.path.isdir(dest) else {
        "missing": [e["path"] for e in manifest["files"]], "short": [], "bad": [],
        "present_bytes": 0}
    complete = not (state["missing"] or state["short"] or state["bad"])
    total = sum(e["size"] for e in manifest["files"])
    removed = []
    if p["repair"] and not complete:
        removed = [b["path"] for b in state["bad"]]
        if not p["keep_short"]:
            removed += state["short"]
        removed = sorted(set(removed))
        if os.path.lexists(os.path.join(dest, MARKER)):
            removed.append(MARKER)
        if not module.check_mode:
            for rel in removed:
                _remove(dest, rel)
    if p["repair"]:
        partials = _stale_partials(dest)
        removed += [os.path.relpath(f, dest) for f in partials]
        if not module.check_mode:
            for path in partials:
                os.unlink(path)
    changed = bool(removed)
    if p["finalize"]:
        if not complete:
            module.fail_json(msg="the copy in %s is not complete; not marking it verified" % dest,
                             **state)
        valid, _reason = marker_is_valid(dest, p["repo_id"], p["revision"])
        if not valid:
            changed = True
            if not module.check_mode:
                try:
                    uid, gid = pwd.getpwnam(p["owner"]).pw_uid, grp.getgrnam(p["group"]).gr_gid
                except KeyError as exc:
                    module.fail_json(msg="no such user or group: %s" % exc)
                _hand_over(dest, uid, gid)
                write_marker(dest, manifest, p["source"], p["sha256"], origin=p["origin"],
                             wave=p["wave"])
    # Measured after the repair: what it removed is free again.
    module.exit_json(changed=changed, verified=complete, removed=removed,
                     needed_bytes=total - state["present_bytes"], free_bytes=free_bytes(dest),
                     total_bytes=total, **state)


if __name__ == "__main__":
    main()
