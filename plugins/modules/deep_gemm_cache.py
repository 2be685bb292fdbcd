#!/usr/bin/python
"""Ansible module: is a DeepGEMM compile cache complete; mark a new one complete and put it in place."""
from __future__ import annotations

DOCUMENTATION = r"""
module: deep_gemm_cache
short_description: Check a DeepGEMM compile cache, or mark a staged one complete and put it in place
description:
  - A cache lives in C(root)/C(key); it is complete when it carries the model-weights
    marker (C(repo_id) deepgemm-jit-cache, C(revision) the key) and every file the marker
    lists has its size (module_utils/deep_gemm_cache.py).
  - C(state=check) reads that and changes nothing.
  - C(state=compiled) takes C(root)/C(key).partial, which SGLang's precompile just filled,
    writes the marker over its files, and renames it to C(root)/C(key) (replacing an
    incomplete one), so a cache is at its final path only once complete.
  - C(state=copied) takes C(root)/C(key).partial, unpacked from another host's complete
    cache with that host's marker, checks every file against that marker, marks it as a
    copy from C(origin) and renames it into place; an incomplete copy fails and is not
    moved. Files the source's marker does not list are removed first.
options:
  root: {description: The directory that holds one cache per key., type: path, required: true}
  key: {description: The cache's key (deep_gemm_cache_key)., type: str, required: true}
  state: {description: What to do., type: str, choices: [check, compiled, copied], default: check}
  origin: {description: With copied, the host the copy came from (recorded in the marker)., type: str, default: ""}
  owner: {description: Owner of the cache (the server adds kernels it meets later)., type: str, default: root}
  group: {description: Group of the cache., type: str, default: root}
"""

EXAMPLES = r"""
- name: Check this host's cache of the layout
  kimi_k2.sglang.deep_gemm_cache:
    root: /var/lib/sglang/deep_gemm
    key: sglang-0.5.6.post1_h200_tp16-dp1-ep1-n2_0123456789ab
"""

RETURN = r"""
complete:
  description: The cache at root/key is complete (after compiled or copied, it is).
  type: bool
  returned: always
reason:
  description: Why it is or is not complete.
  type: str
  returned: always
path:
  description: root/key, what SGLANG_DG_CACHE_DIR names.
  type: str
  returned: always
"""

import grp
import os
import pwd
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.deep_gemm_cache import (is_complete,
                                                                                   mark_complete)
from ansible_collections.kimi_k2.sglang.plugins.module_utils.model_weights import (local_files,
                                                                                 read_marker)


def _give(directory, uid, gid):
    for parent, dirs, files in os.walk(directory):
        os.chown(parent, uid, gid)
        for name in files:
            os.chown(os.path.join(parent, name), uid, gid)


def _put_in_place(staged, final):
    if os.path.lexists(final):
        shutil.rmtree(final)
    os.rename(staged, final)


def main():
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "key": {"type": "str", "required": True, "no_log": False},
            "state": {"type": "str", "choices": ["check", "compiled", "copied"], "default": "check"},
            "origin": {"type": "str", "default": ""},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
        },
        supports_check_mode=True,
    )
    p = module.params
    final = os.path.join(p["root"], p["key"])
    staged = final + ".partial"
    complete, reason = is_complete(final, p["key"]) if os.path.isdir(final) else (
        False, "not built or copied yet")
    if p["state"] == "check":
        module.exit_json(changed=False, complete=complete, reason=reason, path=final)
    if not os.path.isdir(staged):
        module.fail_json(msg="%s does not exist: nothing was %s" % (staged, p["state"]), path=final)
    if p["state"] == "copied":
        valid, why = is_complete(staged, p["key"])
        if not valid:
            module.fail_json(msg="the copy of the DeepGEMM cache %s from %s is incomplete (%s); "
                             "it is not used" % (p["key"], p["origin"] or "its source", why),
                             path=final, complete=False)
    if module.check_mode:
        module.exit_json(changed=True, complete=True, reason="would be marked", path=final)
    if p["state"] == "copied":
        # Only what the source marked complete: a kernel its server was writing while the
        # copy was packed is left out.
        listed = {entry["path"] for entry in read_marker(staged)["files"]}
        for rel in local_files(staged):
            if rel not in listed:
                os.unlink(os.path.join(staged, rel))
    try:
        uid, gid = pwd.getpwnam(p["owner"]).pw_uid, grp.getgrnam(p["group"]).gr_gid
    except KeyError as exc:
        module.fail_json(msg="no such user or group: %s" % exc)
    _give(staged, uid, gid)
    if p["state"] == "compiled":
        mark_complete(staged, p["key"], "compile")
    else:
        mark_complete(staged, p["key"], "copy", origin=p["origin"])
    _put_in_place(staged, final)
    complete, reason = is_complete(final, p["key"])
    module.exit_json(changed=True, complete=complete, reason=reason, path=final)


if __name__ == "__main__":
    main()
