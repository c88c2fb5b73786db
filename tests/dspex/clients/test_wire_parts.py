"""Content parts (images, audio, files) and native tool calls in each wire format, against the simulator."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

import dspex
from dspex.clients.cache import cache_key
from dspex.clients.pipeline import Request
from dspex.clients.scope import streaming
from dspex.clients.wire import IMAGE_TOKENS, estimate_prompt_tokens
from dspex.testing import ProviderServer, SimAnswer, SimToolCall

from .conftest import KEY, make_lm

PROVIDERS = ["openai", "anthropic", "gemini"]
PNG_DATA = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
PNG = f"data:image/png;base64,{PNG_DATA}"
PDF_DATA = base64.b64encode(b"%PDF-1.4 fake").decode()
WAV_DATA = base64.b64encode(b"RIFF fake wav").decode()
URL = "https://example.com/cat.jpg"
TOOLS = [{"type": "function", "function": {
    "name": "add", "description": "Add two numbers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                   "required": ["a", "b"], "additionalProperties": False}}}]


def image_message(url: str = PNG) -> list[dict]:
    return [{"role": "system", "content": "Describe."},
            {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def seen(req) -> str:
    """The simulator's answer: the kinds of parts and tool results it saw."""
    results = ",".join(m["content"] for m in req.tool_results)
    return f"{req.last_user}|{','.join(p['kind'] + ':' + p['source'] for p in req.parts)}|{results}"


def tool_or_text(req):
    """A model that calls ``add`` until it has a result, then answers with it."""
    if req.tools and not req.tool_results:
        return SimAnswer("Let me add.", (SimToolCall("add", {"a": 1, "b": 2}),))
    return f"sum is {req.tool_results[-1]['content']}" if req.tool_results else "no tools"


@pytest.fixture
def sim():
    with ProviderServer(answer=seen, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def tooled():
    with ProviderServer(answer=tool_or_text, api_key=KEY) as srv:
        yield srv


# --- content parts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_image_by_data_url_is_the_providers_image_part(sim, drt, provider):
    comp = make_lm(sim, provider).request(image_message())
    assert comp.text == "What is it?|image:base64|"
    body = sim.log[-1].body
    if provider == "openai":
        assert body["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": PNG}}
    elif provider == "anthropic":
        assert body["system"] == "Describe."
        assert body["messages"][0]["content"] == [
            {"type": "text", "text": "What is it?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA}}]
    else:
        assert body["contents"][0]["parts"] == [{"text": "What is it?"},
                                                {"inline_data": {"mime_type": "image/png", "data": PNG_DATA}}]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_image_by_url_is_the_providers_url_part(sim, drt, provider):
    assert make_lm(sim, provider).request(image_message(URL)).text == "What is it?|image:url|"
    body = sim.log[-1].body
    if provider == "anthropic":
        assert body["messages"][0]["content"][1] == {"type": "image", "source": {"type": "url", "url": URL}}
    elif provider == "gemini":
        assert body["contents"][0]["parts"][1] == {"file_data": {"mime_type": "image/jpeg", "file_uri": URL}}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_pdf_file_part(sim, drt, provider):
    part = {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF_DATA}", "filename": "a.pdf"}}
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Sum up"}, part]}]
    text = make_lm(sim, provider).request(msgs).text
    kind = {"openai": "file:base64", "anthropic": "document:base64", "gemini": "file:base64"}[provider]
    assert text == f"Sum up|{kind}|"
    if provider == "anthropic":
        assert sim.log[-1].body["messages"][0]["content"][1] == {
            "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_DATA},
            "title": "a.pdf"}


def test_audio_goes_to_openai_and_gemini_and_anthropic_refuses_it_by_name(sim, drt):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Hear"},
                                         {"type": "input_audio", "input_audio": {"data": WAV_DATA, "format": "wav"}}]}]
    assert make_lm(sim, "openai").request(msgs).text == "Hear|audio:base64|"
    assert make_lm(sim, "gemini").request(msgs).text == "Hear|audio:base64|"
    assert sim.log[-1].body["contents"][0]["parts"][1] == {"inline_data": {"mime_type": "audio/wav", "data": WAV_DATA}}
    sim.clear_log()
    with pytest.raises(dspex.ConfigError, match=r"'anthropic'.*'input_audio'"):
        make_lm(sim, "anthropic").request(msgs)
    assert sim.log == []  # refused before anything was sent


def test_parts_a_provider_cannot_take_are_config_errors_naming_it(sim, drt):
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Paris is in France."}}
    msgs = [{"role": "user", "content": [doc, {"type": "text", "text": "Where is Paris?"}]}]
    assert make_lm(sim, "anthropic").request(msgs).text == "Paris is in France.Where is Paris?|document:text|"
    for provider in ("openai", "gemini"):
        with pytest.raises(dspex.ConfigError, match=rf"'{provider}'.*'document'"):
            make_lm(sim, provider).request(msgs)
    by_id = [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-123"}}]}]
    with pytest.raises(dspex.ConfigError, match=r"'anthropic'.*file_id"):
        make_lm(sim, "anthropic").request(by_id)
    gif = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}]}]
    with pytest.raises(dspex.ConfigError, match=r"'anthropic'.*image/bmp"):
        make_lm(sim, "anthropic").request(gif)
    assert len(sim.log) == 1  # only the Anthropic document went out
    make_lm(sim, "openai").request("still fine")  # a refused request gave its lease back


@pytest.mark.parametrize("content,match", [
    ([{"type": "video", "video": {}}], r"message 0 part 0 has type 'video'"),
    ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}], "data URL"),
    ([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}], "http"),
    ([{"type": "image_url", "image_url": {"url": PNG, "detail": "max"}}], "detail"),
    ([{"type": "input_audio", "input_audio": {"data": WAV_DATA}}], "format"),
    ([{"type": "file", "file": {"filename": "a.pdf"}}], "file_data"),
    ([{"type": "text"}], "text"),
    ([], "non-empty"),
    (42, "string or a non-empty list"),
])
def test_malformed_parts_are_config_errors_naming_the_message_and_part(sim, drt, content, match):
    with pytest.raises(dspex.ConfigError, match=match):
        make_lm(sim).request([{"role": "user", "content": content}])
    assert sim.log == []


def test_message_roles_and_tool_history_are_checked(sim, drt):
    lm = make_lm(sim)
    with pytest.raises(dspex.ConfigError, match="only user messages"):
        lm.request([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}])
    with pytest.raises(dspex.ConfigError, match="tool_call_id"):
        lm.request([{"role": "tool", "content": "3"}])
    with pytest.raises(dspex.ConfigError, match="JSON object"):
        lm.request([{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                          "function": {"name": "f", "arguments": "[1]"}}]}])
    with pytest.raises(dspex.ConfigError, match="message 0"):
        lm.request([{"role": "robot", "content": "x"}])
    assert sim.log == []


def test_the_token_estimate_and_cache_key_take_list_content(sim, tmp_path):
    msgs = dspex.clients.lm.normalize_messages(image_message())
    text_chars = len("Describe.") + len("What is it?")
    assert estimate_prompt_tokens(msgs) == text_chars // 4 + IMAGE_TOKENS
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = make_lm(sim, cache=True)
        est = Request(lm.config, msgs, {"max_tokens": 10}).admit().est_tokens
        assert est == text_chars // 4 + IMAGE_TOKENS + 10
        other = image_message(f"data:image/png;base64,{base64.b64encode(b'another').decode()}")
        other_msgs = dspex.clients.lm.normalize_messages(other)
        assert cache_key("openai", "m", msgs, {}) != cache_key("openai", "m", other_msgs, {})
        first = lm.request(image_message())
        again = lm.request(image_message())
        assert again.cached and again.text == first.text and len(sim.log) == 1
        assert not lm.request(other).cached


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_simulator_answers_400_to_a_malformed_part(sim, provider):
    bodies = {
        "openai": ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!not base64!!"}}]}]}),
        "anthropic": ("/v1/messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": PNG_DATA}}]}]}),
        "gemini": ("/v1beta/models/m:generateContent", {"contents": [{"role": "user", "parts": [
            {"inline_data": {"data": PNG_DATA}}]}]}),
    }
    path, body = bodies[provider]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", "x-api-key": KEY,
               "x-goog-api-key": KEY}
    request = urllib.request.Request(sim.url + path, json.dumps(body).encode(), headers)
    assert sim.url.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 400 and sim.log[-1].status == 400


# --- native tool calls -----------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_tool_calls_come_back_in_each_format_and_their_results_go_back(tooled, drt, provider, stream):
    lm = make_lm(tooled, provider)
    pieces: list = []
    ask = [{"role": "user", "content": "add 1 and 2"}]
    with streaming(pieces.append if stream else None):
        comp = lm.request(ask, tools=TOOLS, tool_choice="auto")
    (call,) = dict(comp.extras)["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "add"
    assert json.loads(call["function"]["arguments"]) == {"a": 1, "b": 2}
    assert call["id"] == {"openai": "call_sim0", "anthropic": "toolu_sim0", "gemini": "call_0"}[provider]
    assert comp.text == "Let me add."
    if stream:
        assert "".join(p for p in pieces if p) == "Let me add." and tooled.log[-1].status == 200
    assert comp.usage.completion_tokens == tooled.log[-1].completion_tokens
    history = [*ask, {"role": "assistant", "content": comp.text, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": call["id"], "content": "3"}]
    with streaming(pieces.append if stream else None):
        assert lm.request(history, tools=TOOLS).text == ("sum is 3" if provider != "gemini"
                                                         else 'sum is {"result": "3"}')
    body = tooled.log[-1].body
    if provider == "openai":
        assert body["tools"] == TOOLS and body["messages"][2]["tool_call_id"] == call["id"]
    elif provider == "anthropic":
        assert body["tools"] == [{"name": "add", "description": "Add two numbers.",
                                  "input_schema": TOOLS[0]["function"]["parameters"]}]
        assert body["messages"][1]["content"] == [
            {"type": "text", "text": "Let me add."},
            {"type": "tool_use", "id": call["id"], "name": "add", "input": {"a": 1, "b": 2}}]
        assert body["messages"][2] == {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call["id"], "content": "3"}]}
    else:
        (declaration,) = body["tools"][0]["functionDeclarations"]
        assert "additionalProperties" not in declaration["parameters"]  # Gemini refuses it
        assert body["contents"][1]["parts"][1] == {"functionCall": {"name": "add", "args": {"a": 1, "b": 2}}}
        assert body["contents"][2]["parts"] == [{"functionResponse": {"name": "add", "response": {"result": "3"}}}]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_tool_call_alone_is_an_answer_and_lm_call_gives_dspys_dicts(drt, provider):
    calls = (SimToolCall("add", {"a": 1, "b": 2}), SimToolCall("add", {"a": 3, "b": 4}))
    with ProviderServer(answer=lambda req: SimAnswer(tool_calls=calls), api_key=KEY) as srv:
        lm = make_lm(srv, provider)
        (out,) = lm(messages=[{"role": "user", "content": "add twice"}], tools=TOOLS)
        assert out["text"] == "" and [json.loads(c["function"]["arguments"]) for c in out["tool_calls"]] == [
            {"a": 1, "b": 2}, {"a": 3, "b": 4}]
        with streaming(lambda piece: None):
            comp = lm.request("add twice", tools=TOOLS)
        assert len(dict(comp.extras)["tool_calls"]) == 2 and comp.attempts == 1  # not "empty", not retried


@pytest.mark.parametrize("provider,choice,expected", [
    ("anthropic", "required", {"type": "any", "disable_parallel_tool_use": True}),
    ("anthropic", {"type": "function", "function": {"name": "add"}}, {"type": "tool", "name": "add",
                                                                      "disable_parallel_tool_use": True}),
    ("gemini", "required", {"functionCallingConfig": {"mode": "ANY"}}),
    ("gemini", {"type": "function", "function": {"name": "add"}},
     {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["add"]}}),
    ("openai", "required", "required"),
])
def test_tool_choice_and_parallel_calls_reach_each_provider_in_its_format(tooled, drt, provider, choice, expected):
    make_lm(tooled, provider).request("add", tools=TOOLS, tool_choice=choice, parallel_tool_calls=False)
    body = tooled.log[-1].body
    if provider == "gemini":
        assert body["toolConfig"] == expected and "parallel_tool_calls" not in body["generationConfig"]
    else:
        assert body["tool_choice"] == expected
        assert ("parallel_tool_calls" in body) == (provider == "openai")


def test_bad_tools_are_config_errors(tooled, drt):
    with pytest.raises(dspex.ConfigError, match="tool 0"):
        make_lm(tooled, "anthropic").request("add", tools=[{"type": "function", "function": {}}])
    with pytest.raises(dspex.ConfigError, match="tool_choice"):
        make_lm(tooled, "gemini").request("add", tools=TOOLS, tool_choice="sometimes")
    with pytest.raises(dspex.ConfigError, match=r"'anthropic'.*only function tools"):
        make_lm(tooled, "anthropic").request("add", tools=[{"type": "web_search"}])
    with pytest.raises(dspex.ConfigError, match="names no function"):
        make_lm(tooled, "gemini").request([{"role": "user", "content": "x"},
                                           {"role": "tool", "tool_call_id": "c9", "content": "3"}])
    assert tooled.log == []


def test_the_booking_bound_of_an_unconfirmed_attempt_covers_what_parts_can_be_billed():
    from dspex.clients.prices import IMAGE_BOUND_TOKENS, REFERENCED_MEDIA_BOUND_TOKENS, prompt_tokens_bound

    text_only = prompt_tokens_bound([{"role": "user", "content": "describe"}])
    by_url = prompt_tokens_bound([{"role": "user", "content": [
        {"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": "https://img.test/a.png"}}]}])
    assert by_url >= text_only + IMAGE_BOUND_TOKENS  # a short URL is never booked as a few tokens
    referenced = prompt_tokens_bound([{"role": "user", "content": [{"type": "file", "file": {"file_id": "f-1"}}]}])
    assert referenced >= REFERENCED_MEDIA_BOUND_TOKENS
    data = "QUJD" * 5000
    inline = prompt_tokens_bound([{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}]}])
    assert len(data) <= inline < REFERENCED_MEDIA_BOUND_TOKENS  # base64 has more bytes than the clip has tokens
