"""The redact filter masks secrets in the text a failure message shows (issue 14)."""
from ansible_collections.kimi_k2.sglang.plugins.filter.redact import redact

KEY = "sk-'k2'\"x\"\\y"


def test_every_form_of_the_secret_is_masked_in_nested_text():
    lines = [f"server_args=ServerArgs(api_key={KEY!r})", {"raw": f"Bearer {KEY}"},
             f'{{"api_key": {__import__("json").dumps(KEY)}}}', 42]
    masked = redact(lines, [KEY, "", None])
    assert masked == ["server_args=ServerArgs(api_key='<redacted>')",
                      {"raw": "Bearer <redacted>"}, '{"api_key": "<redacted>"}', 42]


def test_no_secret_leaves_the_value_alone():
    assert redact(["a", "b"], []) == ["a", "b"]
    assert redact("plain", [None, ""]) == "plain"
    assert redact("key k", "k") == "<redacted>ey <redacted>"
