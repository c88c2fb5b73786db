"""dspex.Settings: arguments > DSPEX_* environment > the TOML file > defaults; every bad value a ConfigError
naming the key, its source and what is expected; keys never shown."""

from __future__ import annotations

import pickle

import pytest

import dspex
from dspex.testing import ProviderServer

KEY = "sk-settings-test-123456"


def write(tmp_path, text: str):
    path = tmp_path / "dspex.toml"
    path.write_text(text)
    return path


def test_precedence_argument_then_env_then_file_then_default(tmp_path):
    path = write(tmp_path, 'model = "openai/from-file"\nbudget_usd = 1.0\nbudget_tokens = 500\nruns_dir = "file-runs"\n')
    env = {"DSPEX_BUDGET_USD": "2.0", "DSPEX_BUDGET_TOKENS": "700"}
    s = dspex.Settings.load(config=path, environ=env, budget_tokens=900)
    assert (s.model, s.budget_usd, s.budget_tokens, str(s.runs_dir), s.base) == (
        "openai/from-file", 2.0, 900, "file-runs", "local")
    assert s.source("budget_tokens") == "argument"
    assert s.source("budget_usd") == "env DSPEX_BUDGET_USD"
    assert s.source("model") == f"{path}:1" and s.source("runs_dir") == f"{path}:4"
    assert s.source("base") == "default"


def test_the_file_comes_from_dspex_config_or_the_working_directory(tmp_path, monkeypatch):
    write(tmp_path, 'base = "multiproc"\n')
    monkeypatch.chdir(tmp_path)
    assert dspex.Settings.load(environ={}).base == "multiproc"
    other = tmp_path / "team.toml"
    other.write_text('base = "tcp"\n')
    assert dspex.Settings.load(environ={"DSPEX_CONFIG": str(other)}).base == "tcp"


@pytest.mark.parametrize("case, message", [
    ({"environ": {"DSPEX_BUDGET_USD": "-1"}}, r"budget_usd = '-1' \(from env DSPEX_BUDGET_USD\): .*greater than or equal to 0"),
    ({"budget_tokens": "lots"}, r"budget_tokens = 'lots' \(from argument\): .*valid integer"),
    ({"model": "acme/model"}, r"model = 'acme/model' \(from argument\): .*provider one of openai, anthropic"),
    ({"dashboard_port": 70000}, r"dashboard_port = 70000 \(from argument\): .*less than or equal to 65535"),
    ({"base": "cluster"}, r"base = 'cluster' \(from argument\): Input should be 'local', 'multiproc' or 'tcp'"),
    ({"environ": {"DSPEX_MODLE": "openai/x"}}, r"DSPEX_MODLE names no setting; known: DSPEX_MODEL"),
    ({"environ": {"DSPEX_PRICES": '{"openai/x": [-1, 2]}'}}, r"prices = .* \(from env DSPEX_PRICES\): .*>= 0"),
    ({"config": "/nonexistent/dspex.toml"}, r"config file /nonexistent/dspex.toml does not exist"),
])
def test_a_bad_value_names_the_key_its_source_and_what_is_expected(case, message):
    case = {"environ": {}, **case}
    with pytest.raises(dspex.ConfigError, match=message):
        dspex.Settings.load(**case)


@pytest.mark.parametrize("text, message", [
    ('model = "openai/x"\nbudget_usd = -2\n', r"budget_usd = -2 \(from .*dspex.toml:2\)"),
    ('colour = "blue"\n', r"unknown key 'colour' in .*dspex.toml:1"),
    ('model = \n', r"is not valid TOML"),
    ('budget_tokens = "many"\n', r"budget_tokens = 'many' \(from .*dspex.toml:1\): .*valid integer"),
])
def test_a_bad_file_says_which_line(tmp_path, text, message):
    with pytest.raises(dspex.ConfigError, match=message):
        dspex.Settings.load(config=write(tmp_path, text), environ={})


def test_an_unreadable_file_is_a_config_error(tmp_path):
    path = tmp_path / "dspex.toml"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(dspex.ConfigError, match="cannot read"):
        dspex.Settings.load(config=path, environ={})


def test_keys_are_secrets_everywhere(tmp_path):
    s = dspex.Settings.load(environ={"OPENAI_API_KEY": KEY, "DSPEX_ANTHROPIC_API_KEY": KEY + "x"})
    assert s.key("openai") == KEY and s.key("anthropic") == KEY + "x" and s.key("gemini") is None
    for text in (repr(s), str(s), str(s.report()), str(pickle.dumps(s))):
        assert KEY not in text
    assert ("openai_api_key", "set", "env OPENAI_API_KEY") in s.report()
    with pytest.raises(dspex.ConfigError, match="settings: openai_api_key = \\*\\*\\*"):
        dspex.Settings.load(environ={}, openai_api_key=12)


def test_a_runtime_takes_its_keys_cache_folder_and_prices_from_its_settings(tmp_path):
    settings = dspex.Settings.load(environ={"DSPEX_OPENAI_API_KEY": KEY}, cache_dir=tmp_path / "c",
                                   prices={"openai/m": (1.0, 2.0)})
    with ProviderServer(answer="hi", api_key=KEY) as server, \
            dspex.runtime("local", settings=settings, log_level="warning") as rt:
        assert rt.cache_dir == tmp_path / "c"
        lm = dspex.LM("openai/m", base_url=server.base_url())  # no api_key=: the settings have it
        comp = lm.request("hello")
        assert comp.text == "hi" and comp.cost == pytest.approx((comp.usage.prompt_tokens + 2 * comp.usage.completion_tokens) / 1e6)


def test_settings_save_and_load_settings_round_trip_only_with_allow_pickle(tmp_path):
    from dspex.errors import ConfigError

    path = tmp_path / "settings.pkl"
    with dspex.context(num_threads=7, max_errors=3):
        dspex.settings.save(path, exclude_keys=["max_errors", "trace"])  # (the trace: what other tests ran)
    with pytest.raises(ConfigError, match="allow_pickle=True"):
        dspex.load_settings(path)
    loaded = dspex.load_settings(path, allow_pickle=True)
    assert loaded == {"num_threads": 7} and dspex.settings.load(path, allow_pickle=True) == loaded
    with dspex.context(**loaded):
        assert dspex.settings.num_threads == 7


def test_the_cluster_cookie_comes_from_the_settings_and_is_never_shown(tmp_path):
    from supervision import Cookie, CookieError, channel

    secret = "a cluster cookie of ours, long enough"
    s = dspex.Settings.load(environ={"DSPEX_COOKIE": secret})  # DSPEX_COOKIE is a setting, not refused
    for text in (repr(s), str(s), str(s.report()), str(pickle.dumps(s))):
        assert secret not in text
    with dspex.runtime("multiproc", settings=s, log_level="warning"):
        assert channel.current_key() == Cookie(secret).key  # the runtime's connections use it
    path = tmp_path / "cookie"
    path.write_text("another cookie, from a file\n")
    path.chmod(0o600)
    with dspex.runtime("multiproc", settings=dspex.Settings.load(environ={"DSPEX_COOKIE_FILE": str(path)}),
                       log_level="warning"):
        assert channel.current_key() == Cookie("another cookie, from a file").key
    path.chmod(0o644)
    with pytest.raises(CookieError, match="chmod 600"):
        dspex.runtime("multiproc", settings=dspex.Settings.load(environ={"DSPEX_COOKIE_FILE": str(path)}),
                      log_level="warning").__enter__()
