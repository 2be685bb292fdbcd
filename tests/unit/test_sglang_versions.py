"""One inventory intent, each SGLang version's flags (issue 15): the per-version rules data
(manifests/sglang/<version>.rules.json) and what the builder does with it. The real
parsers check the same renderings in tests/conformance."""
import json

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_versions as versions

from conftest import builder

OLD, NEW = "0.5.6.post1", "0.5.23"


def _argv(deployment, version, **changes):
    return builder.sglang_launch_argv({**deployment, "variant": "instruct",
                                       "sglang_version": version, **changes})


@pytest.mark.parametrize("profile,old,new", [
    ("tp8", ["--tp-size", "8", "--trust-remote-code"], ["--tp-size", "8", "--trust-remote-code"]),
    ("latency", ["--tp-size", "8", "--dp-size", "4", "--enable-dp-attention"],
     ["--tp-size", "8", "--attn-dp-size", "4", "--trust-remote-code"]),
    ("throughput", ["--tp-size", "8", "--dp-size", "4", "--ep-size", "4",
                    "--enable-dp-attention"],
     ["--tp-size", "8", "--attn-dp-size", "4", "--ep-size", "4", "--trust-remote-code"]),
])
def test_each_profile_renders_each_versions_spelling(deployment, profile, old, new):
    assert _argv(deployment, OLD, profile=profile)[4:4 + len(old)] == old
    assert _argv(deployment, NEW, profile=profile)[4:4 + len(new)] == new


def test_replicas_without_attention_dp_are_dp_size_on_both(deployment):
    for version in (OLD, NEW):
        argv = _argv(deployment, version, dp_size=2, dp_attention_enabled=False)
        assert argv[4:8] == ["--tp-size", "8", "--dp-size", "2"], version
        assert "--enable-dp-attention" not in argv and "--attn-dp-size" not in argv


@pytest.mark.parametrize("extra,words", [
    (["--cuda-graph-max-bs", "256"], ["--cuda-graph-max-bs", "ambiguous",
                                       "--cuda-graph-max-bs-decode"]),
    (["--cuda-graph-bs", "1", "2"], ["ambiguous", "--cuda-graph-bs-decode"]),
    (["--disable-cuda-graph"], ["deprecated in SGLang 0.5.23",
                                "--cuda-graph-backend-decode disabled"]),
    (["--monokernel-backend", "amd"], ["deprecated", "--enable-amd-monokernel"]),
    (["--enable-double-sparsity"], ["not of 0.5.23", "no replacement"]),
])
def test_old_flags_in_extra_args_are_refused_on_the_new_version_naming_the_fix(
        deployment, extra, words):
    if versions.has_flag(OLD, extra[0]):
        assert _argv(deployment, OLD, extra_args=extra)  # fine where it belongs
    problems = builder.sglang_launch_problems({**deployment, "sglang_version": NEW,
                                               "extra_args": extra})
    assert len(problems) == 1 and "sglang_service_extra_args" in problems[0], problems
    for word in words:
        assert word in problems[0], (word, problems[0])


@pytest.mark.parametrize("flag", ["--enable-dp-attention", "--attn-dp-size"])
def test_the_layout_flags_of_either_version_belong_to_the_builder(deployment, flag):
    for version in (OLD, NEW):
        extra = [flag] if flag == "--enable-dp-attention" else [flag, "2"]
        problems = builder.sglang_launch_problems({**deployment, "sglang_version": version,
                                                   "extra_args": extra})
        assert any("sglang_service_dp_attention_enabled" in p for p in problems), problems


def test_a_new_only_flag_on_the_old_version_is_refused(deployment):
    problems = builder.sglang_launch_problems({
        **deployment, "extra_args": ["--cuda-graph-max-bs-decode", "8"]})
    assert any("a flag of SGLang 0.5.23 but not of 0.5.6.post1" in p for p in problems)


def test_reasoning_parser_on_instruct_is_refused_only_where_it_empties_content(deployment):
    instruct = {**deployment, "variant": "instruct", "reasoning_parser": "kimi_k2"}
    assert any("reasoning_content" in p for p in builder.sglang_launch_problems(instruct))
    assert builder.sglang_launch_problems({**instruct, "sglang_version": NEW}) == []


def test_the_new_versions_value_forms_are_understood():
    assert builder.argv_problems(["--no-enable-tf32-matmul", "--monokernel-backend", "amd",
                                  "--attn-dp-size", "2"], NEW) == []
    assert builder.argv_problems(["--monokernel-backend", "intel"], NEW)


def test_every_manifest_has_rules_and_the_rules_match_their_manifest():
    manifests = sorted((p.stem for p in versions.MANIFEST_DIR.glob("*.json")
                        if not p.name.endswith(".rules.json")), key=versions.known_versions().index)
    assert versions.known_versions() == manifests == [OLD, NEW]
    for version in manifests:
        rules = versions.rules(version)
        assert rules["sglang_version"] == version
        assert versions.manifest(version)["sglang_version"] == version
        # The simulator's table covers exactly the reasoning parsers the parser accepts.
        choices = set(versions.options(version)["--reasoning-parser"]["choices"]) - {"auto"}
        assert set(rules["reasoning_parsers"]) == choices, version
        for flag in rules["replaced_flags"]:
            retired = [v for v in manifests if v != version and versions.has_flag(v, flag)]
            deprecated = versions.options(version).get(flag, {}).get("deprecated")
            assert retired or deprecated, (version, flag)
        assert rules["entry_point"]["unit"][0] == "-m"
        assert rules["endpoints"]["liveness"] == "/health"


def test_has_flag_answers_from_the_pinned_manifest():
    assert versions.has_flag(NEW, "--attn-dp-size") and not versions.has_flag(OLD,
                                                                              "--attn-dp-size")
    assert versions.has_flag(OLD, "--cuda-graph-max-bs")
    assert not versions.has_flag(NEW, "--cuda-graph-max-bs")


def test_a_version_without_rules_is_refused_with_what_to_add(deployment, tmp_path,
                                                              monkeypatch):
    for name in (f"{OLD}.json", "9.9.9.json"):
        (tmp_path / name).write_text((versions.MANIFEST_DIR / f"{OLD}.json").read_text())
    (tmp_path / f"{OLD}.rules.json").write_text(
        json.dumps(versions.rules(OLD)))
    monkeypatch.setattr(versions, "MANIFEST_DIR", tmp_path)
    monkeypatch.setattr(builder, "MANIFEST_DIR", tmp_path)
    for cached in (versions.manifest, versions.rules, versions.options, builder.load_manifest):
        cached.cache_clear()
    try:
        with pytest.raises(AnsibleFilterError, match="9.9.9.rules.json"):
            builder.sglang_launch_problems({**deployment, "sglang_version": "9.9.9"})
    finally:
        for cached in (versions.manifest, versions.rules, versions.options,
                       builder.load_manifest):
            cached.cache_clear()
