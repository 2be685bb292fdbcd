#!/usr/bin/python
"""Ansible module: the list of files (with sizes) a complete copy of a model revision has."""
from __future__ import annotations

DOCUMENTATION = r"""
module: model_weights_manifest
short_description: List the files, sizes and sha256 of one model revision at its source
description:
  - C(source=hub) asks the Hugging Face Hub (or C(endpoint), a mirror) for the revision's
    files with their sizes and LFS sha256, through huggingface_hub; run the module with the
    Python of a venv that has it (set ansible_python_interpreter on the task).
  - C(source=path) reads a mounted mirror. A mirror staged by this toolkit carries a marker
    whose manifest is used as is; any other mirror is listed, each safetensors shard checked
    against its own header and the index, and refused when incomplete.
  - Reads only; the token reaches the Hub from C(token_file), never an argument.
options:
  source: {description: Where the revision lives., type: str, required: true, choices: [hub, path]}
  repo_id: {description: Hub repository id., type: str, required: true}
  revision: {description: Commit sha of the revision., type: str, required: true}
  endpoint: {description: Hub URL; empty for huggingface.co., type: str, default: ""}
  token_file: {description: File holding a Hub token; empty for none., type: path, default: ""}
  path: {description: The mirror directory holding the revision's files (source=path)., type: path, default: ""}
"""

EXAMPLES = r"""
- name: List the files of Kimi-K2-Instruct at a pinned commit
  kimi_k2.sglang.model_weights_manifest:
    source: hub
    repo_id: moonshotai/Kimi-K2-Instruct
    revision: "{{ model_weights_revision }}"
  vars:
    ansible_python_interpreter: /opt/model-weights/venv/bin/python
"""

RETURN = r"""
manifest:
  description: repo_id, revision and files (path, size, sha256 or null).
  type: dict
  returned: success
total_bytes:
  description: Sum of the file sizes.
  type: int
  returned: success
"""

import os
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.model_weights import manifest_from_directory, marker_is_valid, read_marker


def from_hub(module, p):
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        module.fail_json(msg="huggingface_hub is not importable by %s: run this module with "
                         "the model_weights venv's Python" % sys.executable)
    token = False
    if p["token_file"]:
        with open(p["token_file"]) as f:
            token = f.read().strip() or False
    api = HfApi(endpoint=p["endpoint"] or None, token=token)
    try:
        info = api.model_info(p["repo_id"], revision=p["revision"], files_metadata=True)
    except HfHubHTTPError as exc:
        # The client's own error names the cause: repo or revision not found, gated, 401.
        module.fail_json(msg="the Hub refused %s@%s: %s" % (p["repo_id"], p["revision"],
                                                           str(exc).splitlines()[0]))
    if info.sha != p["revision"]:
        module.fail_json(msg="the Hub resolved %s to %s; pin the full commit sha"
                         % (p["revision"], info.sha))
    files = [{"path": s.rfilename, "size": s.size,
              "sha256": s.lfs.sha256 if s.lfs else None} for s in info.siblings]
    missing_size = [f["path"] for f in files if f["size"] is None]
    if missing_size:
        module.fail_json(msg="the Hub gave no size for %s" % ", ".join(missing_size))
    return {"repo_id": p["repo_id"], "revision": p["revision"],
            "files": sorted(files, key=lambda f: f["path"])}


def from_path(module, p):
    if not os.path.isdir(p["path"]):
        module.fail_json(msg="model_weights_path %s is not a directory on this host "
                         "(is the mirror mounted?)" % p["path"])
    valid, _reason = marker_is_valid(p["path"], p["repo_id"], p["revision"])
    if valid:
        marker = read_marker(p["path"])
        return {k: marker[k] for k in ("repo_id", "revision", "files")}
    manifest, problems = manifest_from_directory(p["path"], p["repo_id"], p["revision"])
    if problems:
        module.fail_json(msg="the mirror %s is incomplete: %s" % (p["path"], "; ".join(problems)),
                         problems=problems)
    return manifest


def main():
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "required": True, "choices": ["hub", "path"]},
            "repo_id": {"type": "str", "required": True},
            "revision": {"type": "str", "required": True},
            "endpoint": {"type": "str", "default": ""},
            "token_file": {"type": "path", "default": ""},
            "path": {"type": "path", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    manifest = from_hub(module, p) if p["source"] == "hub" else from_path(module, p)
    module.exit_json(changed=False, manifest=manifest,
                     total_bytes=sum(f["size"] for f in manifest["files"]))


if __name__ == "__main__":
    main()
