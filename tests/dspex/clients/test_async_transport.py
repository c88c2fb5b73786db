"""The asyncio engine's HTTP (aiohttp) under the threaded transport's rules: the same outcome for every answer
and every fault the simulator can make, on each wire format, and a deadline for the whole attempt."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from dspex.clients.async_transport import AsyncTransport
from dspex.clients.config import LMConfig, Secret
from dspex.clients.transport import MAX_BODY, Transport
from dspex.testing import Faults, ProviderServer

KEY = "sk-test-async-transport-0123456789"
MESSAGES = [{"role": "user", "content": "hello there"}]


def outcome_shape(result):
    """What must agree between the engines (latency aside; a detail's wording may name the library)."""
    return {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name not in ("latency_s", "detail")}


def both(server, provider="openai", schedule=("ok",), timeout=5.0, **faults):
    """The same requests through the threaded transport and the async one (one fault each, in order)."""
    cfg = LMConfig(provider, "sim-model", server.base_url(provider), timeout=timeout, max_tokens=32)
    sync, results = Transport(cfg, Secret(KEY)), {"sync": [], "async": []}
    server.set_faults(Faults(schedule=schedule, **faults))
    for _ in schedule:
        results["sync"].append(sync.attempt(MESSAGES, cfg.sampling()))
    server.set_faults(Faults(schedule=schedule, **faults))

    async def run():
        transport = AsyncTransport(sync)
        try:
            return [await transport.attempt(MESSAGES, cfg.sampling()) for _ in schedule]
        finally:
            await transport.aclose()

    results["async"] = asyncio.run(run())
    sync.close()
    return results


@pytest.fixture
def server():
    with ProviderServer(answer="hi back", api_key=KEY) as srv:
        yield srv


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_every_fault_has_the_same_outcome_on_both_engines(server, provider):
    schedule = ("ok", "500", "429", "503", "malformed", "truncate", "reset", "400", "ok")
    results = both(server, provider, schedule, retry_after=2.0)
    for kind, sync, aio in zip(schedule, results["sync"], results["async"]):
        assert outcome_shape(aio) == outcome_shape(sync), kind
    kinds = [r.kind.value for r in results["async"]]
    assert kinds[0] == "ok" and results["async"][0].text == "hi back"
    assert kinds[1:4] == ["status"] * 3 and results["async"][2].retry_after == 2.0
    assert kinds[4] == "malformed" and kinds[5] == "connection" and kinds[6] == "connection"


def test_a_hung_answer_is_cut_at_the_attempts_deadline(server):
    start = time.monotonic()
    results = both(server, schedule=("hang",), timeout=0.5, hang_s=20.0)
    assert time.monotonic() - start < 5
    assert [r.kind.value for r in results["async"]] == ["timeout"] == [r.kind.value for r in results["sync"]]


def test_a_wrong_key_is_a_status_and_the_key_never_shows(server):
    cfg = LMConfig("openai", "sim-model", server.base_url(), timeout=5.0)
    wrong = "sk-wrong-key-that-must-not-leak-42"

    async def run():
        transport = AsyncTransport(Transport(cfg, Secret(wrong)))
        try:
            return await transport.attempt(MESSAGES, {}), repr(transport)
        finally:
            await transport.aclose()

    result, shown = asyncio.run(run())
    assert result.kind.value == "status" and result.status == 401
    assert wrong not in result.detail and wrong not in shown and "wrong-key-that" not in result.detail


def test_a_refused_connection_is_a_connection_failure():
    cfg = LMConfig("openai", "sim-model", "http://127.0.0.1:9/v1", timeout=2.0)

    async def run():
        transport = AsyncTransport(Transport(cfg, Secret(KEY)))
        try:
            return await transport.attempt(MESSAGES, {})
        finally:
            await transport.aclose()

    assert asyncio.run(run()).kind.value == "connection"


def test_a_body_larger_than_any_answer_is_refused_the_same_on_both_engines():
    """A 200 whose declared body is past MAX_BODY: not read whole, and booked as the threaded engine books it."""
    with ProviderServer(answer="x" * (MAX_BODY + 1024), api_key=KEY) as big:
        results = both(big)
    assert outcome_shape(results["async"][0]) == outcome_shape(results["sync"][0])
    assert results["async"][0].kind.value != "ok" and "bytes" in results["async"][0].detail
