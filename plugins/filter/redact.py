"""`redact`: mask known secrets in text before it goes into a message.

A journal tail, a command's output or a report line can hold a secret the toolkit did
not put there (SGLang logs its API key at every start; a journal written before the
service's launcher masked it still holds it). Messages that show such text pass it
through this filter with the secrets they could hold:

    msg: "Journal: {{ lines | kimi_k2.sglang.redact([sglang_service_api_key]) }}"

Each secret is masked as written and as Python's repr() and JSON escape it (the forms a
log line shows it in). Strings, lists and dicts (values) are masked recursively; empty
or undefined secrets are ignored. Pure function, unit-tested.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MASK = "<redacted>"


def _forms(secret: str) -> list[str]:
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1],
             json.dumps(secret, ensure_ascii=False)[1:-1]}
    return sorted((f for f in forms if f), key=len, reverse=True)


def _mask(value: Any, forms: list[str]) -> Any:
    if isinstance(value, str):
        for form in forms:
            value = value.replace(form, MASK)
        return value
    if isinstance(value, Mapping):
        return {key: _mask(item, forms) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(item, forms) for item in value]
    return value


def redact(value: Any, secrets: Any) -> Any:
    """value with every form of every secret replaced by <redacted>."""
    if isinstance(secrets, str):
        secrets = [secrets]
    forms = sorted({form for secret in secrets or []
                    if isinstance(secret, str) and secret for form in _forms(secret)},
                   key=len, reverse=True)
    return _mask(value, forms) if forms else value


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"redact": redact}
