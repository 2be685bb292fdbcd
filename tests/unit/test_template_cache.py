"""The compiled template cache of the sglang_service actions: same results, compiled once."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.kimi_k2.sglang.plugins.action import sglang_service_launch as launch_action


@pytest.fixture(scope="module")
def cache():
    # Installed once per process, as in a worker; the first caller names the directory.
    return launch_action.install_template_cache()


def render(text, **variables):
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(text))


def evaluate(expression, **variables):
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.evaluate_expression(trust_as_template(expression))


def test_code_written_by_one_process_is_read_by_another(tmp_path):
    code = compile("x = 1", "<t>", "exec")
    launch_action.CompiledTemplates(str(tmp_path)).put(("template", "x"), code)
    assert launch_action.CompiledTemplates(str(tmp_path)).get(("template", "x")) == code
    assert launch_action.CompiledTemplates(str(tmp_path)).get(("template", "y")) is None


def test_a_damaged_or_missing_cache_only_means_compiling(tmp_path):
    cache = launch_action.CompiledTemplates(str(tmp_path))
    cache.put(("template", "x"), compile("x = 1", "<t>", "exec"))
    for path in tmp_path.iterdir():
        path.write_bytes(b"\x00not marshal")
    assert launch_action.CompiledTemplates(str(tmp_path)).get(("template", "x")) is None
    assert launch_action.CompiledTemplates(None).get(("template", "x")) is None


def test_the_cache_holds_code_not_results(cache):
    assert render("{{ n + 1 }}", n=1) == 2
    assert render("{{ n + 1 }}", n=41) == 42
    assert evaluate("n * 2", n=3) == 6
    assert evaluate("n * 2", n=5) == 10
    assert any(key[:2] == ("template", "{{ n + 1 }}") for key in cache.memory)
    assert any(key[:2] == ("expression", "n * 2") for key in cache.memory)


def test_compiled_code_is_reused_from_disk_by_a_fresh_process(cache, monkeypatch):
    render("{{ 'cached' ~ suffix }}", suffix="!")
    # A forked worker starts with the controller's (empty) memory and the shared folder.
    monkeypatch.setattr(cache, "memory", {})
    compiled = []  # put() follows every compile: nothing may be compiled again
    monkeypatch.setattr(cache, "put", lambda key, code: compiled.append(key))
    assert render("{{ 'cached' ~ suffix }}", suffix="?") == "cached?"
    assert any(key[:2] == ("template", "{{ 'cached' ~ suffix }}") for key in cache.memory)
    assert not [key for key in compiled if key[:2] == ("template", "{{ 'cached' ~ suffix }}")]


def test_syntax_overrides_are_part_of_the_key(cache):
    assert render("[[ a ]] {{ a }}", a=1) == "[[ a ]] 1"
    assert render('#jinja2: variable_start_string: "[[", variable_end_string: "]]"\n'
                  "[[ a ]] {{ a }}", a=1) == "1 {{ a }}"


def test_filters_and_tests_resolve_the_same_in_every_environment(cache):
    for _ in range(2):  # the second round reads the shared lookups
        assert render("{{ [1, 2] | map('string') | join(',') }}") == "1,2"
        assert render("{{ 'a' | to_json }}") == '"a"'
        assert render("{{ x is defined }}", x=1) is True


def test_an_unknown_filter_still_fails(cache):
    for _ in range(2):
        with pytest.raises(AnsibleError, match="no_such_filter"):
            render("{{ 1 | no_such_filter }}")
