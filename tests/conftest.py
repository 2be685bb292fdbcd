"""Shared helpers: the repository root, the launch builder, loading a role's script, and
running a module in process.

Plugins are imported as the collection's: `ansible_collections.kimi_k2.sglang.plugins...`
(pytest.ini puts collections/, the checkout's link to itself, on the path).
"""
import json
import sys
import types
from pathlib import Path

import pytest
from ansible_collections.kimi_k2.sglang.plugins.filter import sglang_launch as builder

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
GSM8K_TEST = SHARED / "data" / "gsm8k" / "test.jsonl"


def load_file(name, path):
    """A script a role copies to its hosts (roles/*/files/: no package, perhaps no
    importable name), run from its source as module `name`. Plugins are imported."""
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses look their module up there
    exec(compile(Path(path).read_text(), str(path), "exec"), module.__dict__)
    return module


def run_module(main, args, monkeypatch, capsys):
    """Run an Ansible module's MAIN in this process with ARGS, as Ansible would hand them
    over; return the JSON it exits with."""
    from ansible.module_utils import basic
    monkeypatch.setattr(basic, "_ANSIBLE_ARGS",
                        json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode())
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    with pytest.raises(SystemExit):
        main()
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def deployment():
    """A valid single-node deployment, as the role's vars/main.yml would build it."""
    return {
        "sglang_version": "0.5.6.post1", "variant": "thinking", "profile": "tp8",
        "model_path": "", "served_model_name": "", "tp_size": None, "dp_size": None,
        "ep_size": None, "dp_attention_enabled": None, "nnodes": 1, "node_rank": 0,
        "dist_init_addr": "h1:50000", "gpu_model": "H200", "gpus_per_node": 8,
        "reasoning_parser": "auto", "tool_call_parser": "auto", "context_length": None,
        "kv_cache_dtype": "auto", "mem_fraction_static": None, "chunked_prefill_size": None,
        "max_running_requests": None, "host": "0.0.0.0", "port": 30000,
        "metrics_enabled": False, "secrets_file": "", "extra_args": [],
    }
