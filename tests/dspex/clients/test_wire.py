"""Each provider's real wire format against the simulator; typed errors; settings validation."""

from __future__ import annotations

import email.utils
import time

import pytest

import dspex
from dspex.clients.wire import parse_duration, parse_retry_after, parse_timestamp
from dspex.testing import Faults, count_tokens

from .conftest import make_lm

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_wire_format_usage_and_auth_header(server, drt, provider):
    lm = make_lm(server, provider, max_tokens=77, temperature=0.5)
    comp = lm.request(MESSAGES)
    assert comp.text == "ans:Capital of France?" and not comp.cached and comp.attempts == 1
    (entry,) = server.log
    # the provider's own counts, not an estimate
    assert (comp.usage.prompt_tokens, comp.usage.completion_tokens) == (entry.prompt_tokens, entry.completion_tokens)
    assert entry.prompt_tokens == count_tokens("Be brief.\nCapital of France?")
    body = entry.body
    if provider == "openai":
        assert entry.path == "/v1/chat/completions" and entry.headers["authorization"] == "<redacted>"
        assert body["messages"] == MESSAGES and body["max_tokens"] == 77 and body["temperature"] == 0.5
    elif provider == "anthropic":
        assert entry.path == "/v1/messages" and entry.headers["x-api-key"] == "<redacted>"
        assert entry.headers["anthropic-version"] == "2023-06-01"
        assert body["system"] == "Be brief." and body["messages"] == MESSAGES[1:] and body["max_tokens"] == 77
    else:
        assert entry.path == "/v1beta/models/test-model:generateContent"
        assert entry.headers["x-goog-api-key"] == "<redacted>"
        assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
        assert body["contents"] == [{"role": "user", "parts": [{"text": "Capital of France?"}]}]
        assert body["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 77}
    assert lm("again") == ["ans:again"]  # __call__ gives the completions, as in DSPy


def test_wrong_key_is_auth_error_never_retried(server, drt):
    lm = make_lm(server, api_key="sk-wrong-key-abcdefgh", retries=5)
    with pytest.raises(dspex.AuthError) as info:
        lm.request("hi")
    assert len(server.log) == 1
    assert info.value.status == 401
    assert "sk-wrong-key-abcdefgh" not in str(info.value)  # the server echoed it; we scrub it
    assert "api_key" in str(info.value)  # says how to fix it


@pytest.mark.parametrize("status", ["400", "404", "422"])
def test_other_4xx_are_provider_errors_never_retried(server, drt, status):
    server.set_faults(Faults(schedule=[status]))
    with pytest.raises(dspex.ProviderError) as info:
        make_lm(server, retries=5).request("hi")
    assert info.value.status == int(status) and len(server.log) == 1


@pytest.mark.parametrize("fault,error", [("malformed", dspex.MalformedResponse), ("truncate", dspex.ProviderError),
                                         ("reset", dspex.ProviderError), ("503", dspex.ProviderError),
                                         ("408", dspex.ProviderError), ("409", dspex.ProviderError)])
def test_retryable_faults_are_retried_then_typed(server, drt, fault, error):
    server.set_faults(Faults(schedule=[fault] * 3, retry_after=None))
    with pytest.raises(error) as info:
        make_lm(server, retries=2).request("hi")
    assert info.value.attempts == 3 and len(server.log) == 3
    server.set_faults(Faults(schedule=[fault]))
    assert make_lm(server, retries=2).request("ok now").attempts == 2


def test_hang_becomes_timeout(server, drt):
    server.set_faults(Faults(schedule=["hang", "hang"], hang_s=2.0))
    start = time.monotonic()
    with pytest.raises(dspex.LMTimeout) as info:
        make_lm(server, timeout=0.3, retries=1).request("hi")
    assert info.value.attempts == 2 and time.monotonic() - start < 1.5
    assert isinstance(info.value, TimeoutError)


def test_retry_after_parsing():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("0.5") == 0.5
    date = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 < parse_retry_after(date) <= 10.0
    assert parse_retry_after("soon") is None
    assert parse_duration("6m0s") == 360.0 and parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5) and parse_duration("x1s") is None
    assert 0 <= parse_timestamp(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5))) <= 5


def test_bad_settings_and_messages_raise_config_errors(server, drt):
    with pytest.raises(dspex.ConfigError, match="provider/model"):
        dspex.LM("gpt-4o-mini")
    with pytest.raises(dspex.ConfigError, match="unknown provider"):
        dspex.LM("nosuchprovider/large")
    with pytest.raises(dspex.ConfigError, match="max_in_flight"):
        make_lm(server, max_in_flight=0)
    with pytest.raises(dspex.ConfigError, match="message 0"):
        make_lm(server).request([{"role": "robot", "content": "x"}])
    with pytest.raises(dspex.ConfigError, match="other limits"):
        make_lm(server)
        make_lm(server, rpm=5)


def test_lm_without_runtime_uses_the_process_default_runtime():
    """DSPy's line 1 works: outside any `with dspex.runtime()`, a local default runtime starts (closed at exit)."""
    from dspex.clients.host import OPEN

    lm = dspex.LM("openai/gpt-4o-mini", api_key="sk-x")
    try:
        assert lm._need_runtime() is OPEN.default() and OPEN.default().actors.is_local
    finally:
        OPEN.default().close()
    assert OPEN.started_default() is None
