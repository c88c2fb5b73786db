"""The model strings DSPy users write (LiteLLM's prefixes): each provider of the registry answers through
the simulator in its own wire format and auth scheme, its key read from its own variables."""

from __future__ import annotations

import pytest

import dspex
from dspex.providers import PROVIDERS
from dspex.scrub import known_keys
from dspex.testing import ProviderServer

KEY = "sk-test-providers-5551234"
OPENAI_COMPATIBLE = sorted(name for name, spec in PROVIDERS.items() if spec.wire == "openai" and name != "openai")


def answer(req) -> str:
    return f"[[ ## answer ## ]]\n{req.model}\n\n[[ ## completed ## ]]"


@pytest.fixture
def sim(tmp_path):
    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        yield server


@pytest.fixture
def clean_env(monkeypatch):
    """No provider variable of the machine leaks into these tests."""
    for spec in PROVIDERS.values():
        for name in (*spec.key_env, *spec.base_env):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AZURE_API_VERSION", raising=False)
    return monkeypatch


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
def test_each_openai_compatible_prefix_answers_with_the_key_from_its_own_variable(sim, clean_env, provider):
    spec = PROVIDERS[provider]
    clean_env.setenv(spec.key_env[-1], KEY)  # any of its variables will do: the last, to prove the list is read
    lm = dspex.LM(f"{provider}/some-model", api_base=sim.base_url(), cache=False)
    assert dspex.Predict("question -> answer", lm=lm)(question="hi").answer == "some-model"
    sent = sim.log[-1]
    assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == "<redacted>"
    assert lm.usage().requests == 1 and KEY in known_keys()


def test_self_hosted_providers_need_an_endpoint_and_may_go_without_a_key(tmp_path, clean_env):
    with ProviderServer(answer=answer) as server, dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        with pytest.raises(dspex.ConfigError, match="HOSTED_VLLM_API_BASE"):
            dspex.LM("hosted_vllm/my-model")
        clean_env.setenv("HOSTED_VLLM_API_BASE", server.base_url())
        lm = dspex.LM("hosted_vllm/my-model", cache=False)
        assert lm.config.base_url == server.base_url()
        assert dspex.Predict("question -> answer", lm=lm)(question="hi").answer == "my-model"
        assert "authorization" not in server.log[-1].headers  # no key set: none sent


def test_azure_posts_to_the_deployment_with_the_api_key_header_and_version(sim, clean_env):
    with pytest.raises(dspex.ConfigError, match="AZURE_API_BASE"):
        dspex.LM("azure/my-deployment", api_key=KEY)
    clean_env.setenv("AZURE_API_BASE", sim.base_url("azure"))
    clean_env.setenv("AZURE_API_KEY", KEY)
    clean_env.setenv("AZURE_API_VERSION", "2024-10-21")
    lm = dspex.LM("azure/my-deployment", cache=False)
    assert dspex.Predict("question -> answer", lm=lm)(question="hi").answer == "my-deployment"
    sent = sim.log[-1]
    assert sent.provider == "azure" and sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.headers["api-key"] == "<redacted>" and "authorization" not in sent.headers
    assert lm.config.api_version == "2024-10-21"
    wrong = dspex.LM("azure/my-deployment", api_key=KEY + "x", api_version="2025-01-01", cache=False)
    with pytest.raises(dspex.AuthError) as err:
        wrong.request([{"role": "user", "content": "hi"}])
    assert KEY not in str(err.value)
    with pytest.raises(dspex.ConfigError, match="api_version= is Azure OpenAI's"):
        dspex.LM("openai/gpt-4o-mini", api_key=KEY, api_version="2024-10-21")


@pytest.mark.parametrize("provider, path", [("ollama_chat", "/api/chat"), ("ollama", "/api/generate")])
def test_ollama_speaks_its_native_api_with_options_and_its_counts(tmp_path, clean_env, provider, path):
    with ProviderServer(answer=answer) as server, dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        clean_env.setenv("OLLAMA_API_BASE", server.base_url(provider))
        lm = dspex.LM(f"{provider}/llama3.2", max_tokens=40, temperature=0.3, top_p=0.9, cache=False)
        result = dspex.Predict("question -> answer", lm=lm)(question="hi")
        assert result.answer == "llama3.2"
        sent = server.log[-1]
        assert sent.path == path and sent.body["stream"] is False
        assert sent.body["options"] == {"num_predict": 40, "temperature": 0.3, "top_p": 0.9}
        assert ("messages" in sent.body) == (provider == "ollama_chat")
        usage = lm.usage()
        assert (usage.prompt_tokens, usage.completion_tokens) == (sent.prompt_tokens, sent.completion_tokens) != (0, 0)
        assert usage.cost == 0.0  # unpriced: a local server


def test_extra_headers_are_sent_and_a_credential_among_them_is_refused(sim):
    lm = dspex.LM("openrouter/auto", api_key=KEY, api_base=sim.base_url(), cache=False,
                  extra_headers={"HTTP-Referer": "https://example.org", "X-Title": "dspex tests"})
    lm.request([{"role": "user", "content": "hi"}])
    assert sim.log[-1].headers["http-referer"] == "https://example.org"
    assert sim.log[-1].headers["x-title"] == "dspex tests"
    for name in ("Authorization", "X-Api-Key", "api-key", "X-Auth-Token"):
        with pytest.raises(dspex.ConfigError, match="may not carry a credential"):
            dspex.LM("openai/gpt-4o-mini", api_key=KEY, extra_headers={name: "v"})
    with pytest.raises(dspex.ConfigError, match="invalid header"):
        dspex.LM("openai/gpt-4o-mini", api_key=KEY, extra_headers={"X-Bad": "a\r\nInjected: 1"})


def test_an_unknown_prefix_lists_the_known_ones_and_every_key_variable_is_masked(clean_env):
    with pytest.raises(dspex.ConfigError, match="groq, deepseek") as err:
        dspex.LM("nosuchprovider/model")
    assert "ollama_chat" in str(err.value) and "azure" in str(err.value)
    for spec in PROVIDERS.values():
        for n, name in enumerate(spec.key_env):
            value = f"env-secret-{spec.name}-{n}-0123456789"
            clean_env.setenv(name, value)
            assert value in known_keys(), name  # masked in every log line, journal and error


AWS = ("AKIDEXAMPLE0TESTKEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")


def test_bedrock_signs_each_request_with_sigv4_and_the_simulator_checks_it(tmp_path, clean_env):
    pytest.importorskip("botocore", reason="the bedrock extra (./run test installs it)")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION_NAME", "AWS_REGION"):
        clean_env.delenv(name, raising=False)
    with ProviderServer(answer=answer, api_key=":".join(AWS)) as server, \
            dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        with pytest.raises(dspex.ConfigError, match="AWS_REGION_NAME"):
            dspex.LM("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0")
        clean_env.setenv("AWS_ACCESS_KEY_ID", AWS[0])
        clean_env.setenv("AWS_SECRET_ACCESS_KEY", AWS[1])
        clean_env.setenv("AWS_REGION_NAME", "eu-west-3")
        assert dspex.LM("bedrock/m").config.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
        lm = dspex.LM("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0", api_base=server.url, max_tokens=50,
                      cache=False)
        result = dspex.Predict("question -> answer", lm=lm)(question="hi")
        assert result.answer == "anthropic.claude-3-5-haiku-20241022-v1:0"
        sent = server.log[-1]
        assert sent.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse" and sent.status == 200
        assert sent.body["inferenceConfig"]["maxTokens"] == 50 and sent.body["messages"][0]["role"] == "user"
        assert sent.headers["authorization"] == "<redacted>" and "x-amz-date" in sent.headers
        assert lm.usage().prompt_tokens == sent.prompt_tokens > 0
        assert AWS[1] in known_keys() and AWS[1] not in repr(lm)
        forged = dspex.LM("bedrock/m", api_base=server.url, aws_access_key_id=AWS[0],
                          aws_secret_access_key=AWS[1][:-1] + "X", aws_region_name="eu-west-3", cache=False)
        with pytest.raises(dspex.AuthError):
            forged.request([{"role": "user", "content": "hi"}])
        assert server.log[-1].status == 401
    with pytest.raises(dspex.ConfigError, match="AWS options are bedrock"):
        dspex.LM("openai/gpt-4o-mini", api_key=KEY, aws_region_name="us-east-1")


def service_account(token_uri: str) -> dict:
    """A service account of our own making: a fresh RSA key (google-auth signs its token request with it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"type": "service_account", "project_id": "sim-project", "private_key_id": "k1", "private_key": pem,
            "client_email": "dspex-test@sim-project.iam.gserviceaccount.com", "client_id": "1",
            "token_uri": token_uri}


def test_vertex_ai_gets_a_token_from_the_service_account_and_speaks_gemini(tmp_path, clean_env):
    pytest.importorskip("google.auth", reason="the vertex extra (./run test installs it)")
    email = "dspex-test@sim-project.iam.gserviceaccount.com"
    with ProviderServer(answer=answer, api_key=email) as server, \
            dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        info = service_account(f"{server.url}/token")
        with pytest.raises(dspex.ConfigError, match="VERTEXAI_PROJECT"):
            dspex.LM("vertex_ai/gemini-2.0-flash", vertex_credentials=info, api_base=server.url).request(
                [{"role": "user", "content": "hi"}])
        clean_env.setenv("VERTEXAI_PROJECT", "sim-project")
        lm = dspex.LM("vertex_ai/gemini-2.0-flash", vertex_credentials=info, vertex_location="europe-west4",
                      api_base=server.url, cache=False)
        assert dspex.Predict("question -> answer", lm=lm)(question="hi").answer == "gemini-2.0-flash"
        lm.request([{"role": "user", "content": "again"}])
        paths = [e.path for e in server.log]
        assert paths.count("/token") == 1  # the token is kept until it expires
        assert paths[-1] == ("/v1/projects/sim-project/locations/europe-west4/publishers/google/models/"
                             "gemini-2.0-flash:generateContent") and server.log[-1].status == 200
        other = dspex.LM("vertex_ai/gemini-2.0-flash", vertex_credentials=info, vertex_location="europe-west4",
                         vertex_project="other-project", api_base=server.url, cache=False)
        other.request([{"role": "user", "content": "hi"}])  # the same client, its own project in the URL
        assert server.log[-1].path.startswith("/v1/projects/other-project/locations/europe-west4/")
        private = "".join(info["private_key"].splitlines()[1:-1])
        assert private in known_keys() and "PRIVATE KEY" not in repr(lm)
        assert dspex.LM("vertex_ai/m", vertex_credentials=info).config.base_url == \
            "https://us-central1-aiplatform.googleapis.com"
        stranger = {**service_account(f"{server.url}/token"), "client_email": "someone@else.iam.gserviceaccount.com"}
        with pytest.raises(dspex.AuthError, match="access token"):
            dspex.LM("vertex_ai/gemini-2.0-flash", vertex_credentials=stranger, api_base=server.url,
                     cache=False).request([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("wire, body", [
    ("embeddings", {"data": [{"index": 1, "embedding": [0.1]}], "usage": {"prompt_tokens": 2}}),  # no index 0
    ("embeddings", {"data": [{"index": 0, "embedding": ["x"]}], "usage": {"prompt_tokens": 2}}),
    ("embeddings", {"data": [{"index": 0, "embedding": [0.1]}]}),  # no count: never booked at nothing
    ("ollama_chat", {"message": {"content": 42}, "eval_count": 1}),
    ("ollama_chat", {"message": {"content": "hi"}, "eval_count": -3}),
    ("ollama", {"response": ["not", "text"]}),
    ("bedrock", {"output": {"message": {"content": [{"text": "hi"}]}}}),  # no usage
    ("bedrock", {"output": {"message": {"content": [{"text": "hi"}]}}, "usage": {"inputTokens": 1e100,
                                                                               "outputTokens": 1}}),
    ("vertex_ai", {"candidates": "nope"}),
])
def test_a_malformed_answer_of_each_new_wire_format_is_a_wire_error(wire, body):
    from dspex.clients.wire.base import WireError
    from dspex.clients.wire.registry import WIRE_FORMATS

    with pytest.raises(WireError):  # MalformedResponse after the client's retries, billed at its estimate
        WIRE_FORMATS[wire].parse(body)


def test_bad_vertex_credentials_are_typed_errors_that_never_show_the_key(clean_env):
    pytest.importorskip("google.auth", reason="the vertex extra (./run test installs it)")
    secret = "-----BEGIN PRIVATE KEY-----\nMIIsecretbodyABCDEF0123456789\n-----END PRIVATE KEY-----"
    with pytest.raises(dspex.ConfigError, match="not a service account's JSON") as err:
        dspex.LM("vertex_ai/gemini-2.0-flash", vertex_credentials='{"private_key": "' + secret[:20])
    assert "MIIsecret" not in str(err.value)
    with pytest.raises(dspex.ConfigError, match="Vertex AI options are vertex_ai"):
        dspex.LM("openai/gpt-4o-mini", api_key=KEY, vertex_project="p")


def streamed_lm(provider: str, server, clean_env, **options):
    """An LM of ``provider`` on the simulator, with what it needs (endpoint, credentials)."""
    if provider == "bedrock":
        pytest.importorskip("botocore", reason="the bedrock extra (./run test installs it)")
        return dspex.LM("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0", api_base=server.url, cache=False,
                        aws_access_key_id=AWS[0], aws_secret_access_key=AWS[1], aws_region_name="eu-west-3", **options)
    if provider == "vertex_ai":
        pytest.importorskip("google.auth", reason="the vertex extra (./run test installs it)")
        return dspex.LM("vertex_ai/gemini-2.0-flash", vertex_credentials=service_account(f"{server.url}/token"),
                        vertex_project="sim-project", api_base=server.url, cache=False, **options)
    clean_env.setenv("OLLAMA_API_BASE", server.base_url(provider))
    return dspex.LM(f"{provider}/llama3.2", cache=False, **options)


STREAM_ROUTES = {"ollama_chat": "/api/chat", "ollama": "/api/generate",
                 "bedrock": "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream",
                 "vertex_ai": "/v1/projects/sim-project/locations/us-central1/publishers/google/models/"
                              "gemini-2.0-flash:streamGenerateContent"}


@pytest.mark.parametrize("provider", sorted(STREAM_ROUTES))
def test_each_new_wire_format_streams_in_its_own_framing(tmp_path, clean_env, provider):
    """Ollama's JSON lines, Bedrock's AWS event stream (read by botocore's decoder), Vertex AI's server-sent
    events: the pieces arrive in order, make the whole answer, and the counts are the provider's."""
    from dspex.clients.scope import streaming

    words = "one two three four five six seven eight nine ten eleven twelve"
    keys = {"bedrock": ":".join(AWS), "vertex_ai": "dspex-test@sim-project.iam.gserviceaccount.com"}
    with ProviderServer(answer=words, api_key=keys.get(provider)) as server, \
            dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        lm = streamed_lm(provider, server, clean_env)
        pieces: list[str] = []
        with streaming(pieces.append):
            comp = lm.request([{"role": "user", "content": "count"}])
        sent = server.log[-1]
        assert sent.path == STREAM_ROUTES[provider] and sent.status == 200
        assert len([p for p in pieces if p]) == 4 and "".join(pieces) == comp.text == words
        assert (comp.usage.prompt_tokens, comp.usage.completion_tokens) == (sent.prompt_tokens, sent.completion_tokens)
        if provider.startswith("ollama"):
            assert sent.body["stream"] is True
        assert comp.usage.completion_tokens > 0


@pytest.mark.parametrize("provider", ["ollama_chat", "bedrock"])
def test_a_damaged_stream_is_a_malformed_response_billed_not_lost(tmp_path, clean_env, provider):
    from dspex.clients.scope import streaming
    from dspex.testing import Faults

    keys = {"bedrock": ":".join(AWS)}
    with ProviderServer(answer="a b c d e f g h i", api_key=keys.get(provider),
                        faults=Faults(schedule=["malformed"] * 5)) as server, \
            dspex.runtime("local", cache_dir=tmp_path, log_level=None):
        lm = streamed_lm(provider, server, clean_env, retries=1, backoff_base=0.001)
        with pytest.raises(dspex.MalformedResponse, match="not JSON|damaged|not a"), streaming(lambda _: None):
            lm.request([{"role": "user", "content": "count"}])
        usage = lm.usage()  # both attempts booked, at their maximum (the answer's counts never came)
        assert (usage.requests, usage.retries, usage.unconfirmed_calls) == (1, 1, 2) and usage.prompt_tokens > 0


def test_an_exception_in_the_middle_of_a_bedrock_stream_says_what_it_was(monkeypatch):
    """Bedrock sends a throttling (or any) exception as a message of the event stream: a WireError that
    names it, never a half answer."""
    pytest.importorskip("botocore", reason="the bedrock extra (./run test installs it)")
    from dspex.clients.transport import _aws_events
    from dspex.clients.wire.base import WireError
    from dspex.testing import aws_eventstream

    frames = [aws_eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "half"}}),
              aws_eventstream.exception("throttlingException", "Too many tokens, please wait.")]
    stream = b"".join(frames)
    events = _aws_events(iter([stream[:7], stream[7:40], stream[40:]]), __import__("json").loads)
    assert next(events) == {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "half"}}}
    with pytest.raises(WireError, match="throttlingException: .*Too many tokens"):
        next(events)
    damaged = bytearray(frames[0])
    damaged[-1] ^= 0xFF  # the message's checksum no longer matches
    with pytest.raises(WireError, match="damaged"):
        list(_aws_events(iter([bytes(damaged)]), __import__("json").loads))
