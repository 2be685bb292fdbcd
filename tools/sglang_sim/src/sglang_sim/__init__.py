"""sglang_sim: a named test double of SGLang's launch_server (CPU only, stdlib only).

It accepts exactly the argv of the SGLang version in manifest.json, applies the server's
cross-flag rules, and serves SGLang's HTTP API with canned, deterministic answers. It is
for tests and demos of the Kimi-K2 toolkit; it is never presented as SGLang.
"""
__version__ = "0.1.0"
