#!/usr/bin/python
"""Ansible module, run on the controller: a wheelhouse directory as one deterministic tar
named after its content."""
from __future__ import annotations

DOCUMENTATION = r"""
module: wheelhouse_archive
short_description: Pack a directory of wheels into one tar named by its content's digest
description:
  - Copying a wheelhouse file by file costs a round trip or two per wheel (25 wheels took
    minutes); one archive travels in one transfer.
  - The archive holds the top-level regular files of C(src) (dotfiles left out), sorted,
    with fixed owner, mode and time, and last a C(SHA256SUMS) member listing each file's
    sha256. The digest is the sha256 of that list, so the same wheels give the same digest
    and the same bytes on every controller.
  - Writes C(dest)/wheelhouse-<digest>.tar unless it exists already.
options:
  src: {description: The wheelhouse directory., type: path, required: true}
  dest: {description: Directory that keeps the archives., type: path, required: true}
"""

EXAMPLES = r"""
- name: Pack the wheelhouse
  kimi_k2.sglang.wheelhouse_archive:
    src: build/wheelhouse
    dest: ~/.cache/kimi-k2/wheelhouses
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
digest: {description: sha256 of the SHA256SUMS member., type: str, returned: always}
path: {description: The archive., type: str, returned: always}
files: {description: The wheels it holds., type: list, returned: always}
"""

import io
import os
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kimi_k2.sglang.plugins.module_utils.sha256 import sha256_bytes, sha256_file

SUMS = "SHA256SUMS"


def wheel_files(src):
    """The files pip --find-links would see, in a stable order."""
    return sorted(name for name in os.listdir(src)
                  if not name.startswith(".") and os.path.isfile(os.path.join(src, name))
                  and name != SUMS)


def sums(src, names):
    return "".join(f"{sha256_file(os.path.join(src, name))}  {name}\n" for name in names).encode()


def _member(name, size):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_archive(src, names, listing, path):
    """Written beside its final name and renamed: a reader never sees half an archive."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w",
                                                      format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                full = os.path.join(src, name)
                with open(full, "rb") as f:
                    tar.addfile(_member(name, os.path.getsize(full)), f)
            tar.addfile(_member(SUMS, len(listing)), io.BytesIO(listing))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main():
    module = AnsibleModule(
        argument_spec={"src": {"type": "path", "required": True},
                       "dest": {"type": "path", "required": True}},
        supports_check_mode=True,
    )
    src, dest = module.params["src"], module.params["dest"]
    if not os.path.isdir(src):
        module.fail_json(msg=f"wheelhouse {src} is not a directory")
    names = wheel_files(src)
    if not names:
        module.fail_json(msg=f"wheelhouse {src} holds no files")
    listing = sums(src, names)
    digest = sha256_bytes(listing)
    path = os.path.join(dest, f"wheelhouse-{digest}.tar")
    changed = not os.path.exists(path)
    if changed and not module.check_mode:
        os.makedirs(dest, exist_ok=True)
        write_archive(src, names, listing, path)
    module.exit_json(changed=changed, digest=digest, path=path, files=names)


if __name__ == "__main__":
    main()
