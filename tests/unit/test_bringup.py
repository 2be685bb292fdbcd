"""Issue 16's bring-up settings: timeouts, crash dumps and multithreaded loading rendered
only where the pinned version's manifest has them (and then checked against it), the
generation probe per version, and the probe timeout above SGLang's own."""
import json

import pytest

from conftest import builder
from ansible_collections.kimi_k2.sglang.plugins.filter.settings import setting_problems
from ansible_collections.kimi_k2.sglang.plugins.module_utils import sglang_bringup as bringup

BRINGUP = {"watchdog_timeout": 600, "dist_timeout": 1800, "crash_dump_enabled": True,
           "multithread_load_enabled": True, "multithread_load_threads": 16}


def test_the_role_defaults_render_the_timeouts_and_the_crash_dump_folder(deployment):
    argv = builder.sglang_launch_argv({**deployment, **BRINGUP, "multithread_load_enabled": False})
    text = " ".join(argv)
    assert "--watchdog-timeout 600" in text and "--dist-timeout 1800" in text
    assert "--crash-dump-folder /var/lib/sglang/crash_dumps" in text
    assert "--model-loader-extra-config" not in text


def test_multithreaded_loading_passes_the_two_keys_sglang_accepts(deployment):
    argv = builder.sglang_launch_argv({**deployment, **BRINGUP})
    config = json.loads(argv[argv.index("--model-loader-extra-config") + 1])
    # 0.5.6.post1's DefaultModelLoader refuses any other key (model_loader/loader.py:322).
    assert config == {"enable_multithread_load": True, "num_threads": 16}


def test_unset_settings_render_nothing(deployment):
    argv = builder.sglang_launch_argv({**deployment, "watchdog_timeout": None, "dist_timeout": None,
                                       "crash_dump_enabled": False,
                                       "multithread_load_enabled": "false"})
    assert not {"--watchdog-timeout", "--dist-timeout", "--crash-dump-folder",
                "--model-loader-extra-config"} & set(argv)


def test_a_flag_the_pinned_version_lacks_is_left_out():
    flags = {"--watchdog-timeout", "--model-loader-extra-config"}
    assert bringup.bringup_argv(BRINGUP, flags) == [
        "--watchdog-timeout", "600", "--model-loader-extra-config",
        '{"enable_multithread_load":true,"num_threads":16}']


def test_every_rendered_flag_passes_the_pinned_manifest():
    argv = bringup.bringup_argv(BRINGUP, builder._options(builder.load_manifest("0.5.6.post1")))
    assert len(argv) == 8
    assert builder.argv_problems(argv, "0.5.6.post1") == []


@pytest.mark.parametrize("flag", sorted(bringup.OWNED))
def test_extra_args_may_not_set_a_flag_these_settings_own(deployment, flag):
    problems = builder.sglang_launch_problems({**deployment, "extra_args": [flag, "1"]})
    assert any(f"sets {flag}: use {bringup.OWNED[flag]}" in p for p in problems), problems


def test_the_generation_probe_is_health_generate_in_both_pinned_versions():
    assert bringup.generation_probe("0.5.6.post1") == "/health_generate"
    assert bringup.generation_probe("0.5.23") == "/health_generate"
    assert bringup.generation_probe("0.4.0") == "/health"


@pytest.mark.parametrize("timeout,env,bad", [
    (30, {}, False), (20, {}, True), (10, {"SGLANG_HEALTH_CHECK_TIMEOUT": 2}, False),
    (30, {"SGLANG_HEALTH_CHECK_TIMEOUT": "45"}, True)])
def test_the_probe_timeout_must_exceed_sglangs_own(timeout, env, bad):
    problems = bringup.probe_timeout_problems(timeout, env)
    assert bool(problems) == bad, problems
    if bad:
        assert "sglang_service_generation_probe_timeout" in problems[0]
        assert "SGLANG_HEALTH_CHECK_TIMEOUT" in problems[0]


@pytest.mark.parametrize("name,value", [
    ("sglang_service_watchdog_timeout", 0), ("sglang_service_dist_timeout", 10),
    ("sglang_service_multithread_load_threads", 0), ("sglang_service_multithread_load_threads", 65),
    ("sglang_service_generation_probe_timeout", 1)])
def test_each_new_number_is_range_checked_naming_the_variable(name, value):
    problems = setting_problems({name: value})
    assert len(problems) == 1 and problems[0].startswith(name), problems
