"""A provider's bad day, at default settings, against the real simulator (issue 20 §2).

A breaker is for outages: scattered 5xx and 429s are absorbed by retries with backoff and leave the
breaker and the learned rate alone; a real outage opens the breaker within a couple of seconds, nothing
but its trial calls is sent while it is open, and the requests that met it wait and end ok after recovery.
"""

from __future__ import annotations

import threading
import time

import pytest

import dspex
from dspex.testing import Faults, ProviderServer
from tests.conftest import wait_until

from ..scripted import chat

KEY = "sk-test-bad-day-123456"


def same(example, pred, trace=None):
    return pred.answer == example.answer


def devset(n: int, prefix: str = "q") -> list:
    return [dspex.Example(question=f"{prefix}{i}", answer="ok").with_inputs("question") for i in range(n)]


def default_lm(server: ProviderServer) -> dspex.LM:
    """Every setting at its default (breaker, retries, backoff, rpm="auto"), except the cache: each row
    must reach the server."""
    return dspex.LM("openai/bad-day", api_key=KEY, base_url=server.base_url(), cache=False)


def test_20pct_5xx_and_10pct_429_at_defaults_every_row_ends_ok_quickly(tmp_path):
    faults = Faults(error_rates={500: 0.2, 429: 0.1}, retry_after=0.0, latency=0.02)
    with ProviderServer(answer=chat(answer="ok"), api_key=KEY, faults=faults) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as rt:
        events: list = []
        rt.actors.subscribe(events.append)
        lm = default_lm(server)
        start = time.monotonic()
        result = dspex.Evaluate(devset(300), same, workers=0, progress=False).run(dspex.Predict("question -> answer",
                                                                                                lm=lm))
        wall = time.monotonic() - start
        status = lm.status()
        faults_seen = sum(1 for e in server.log if e.status in (429, 500))
    assert faults_seen > 60  # the bad day happened: about 30% of ~430 attempts
    ok = [r for r in result.rows if r.error is None]
    assert len(ok) >= 0.99 * 300, result.to_table(5)
    for row in result.errors:  # a row that exhausted its retries is a typed failed row
        assert isinstance(row.error, (dspex.ProviderError, dspex.RateLimited)), row.error
    assert status.breaker == "closed"
    assert not [e for e in events if getattr(e, "kind", "") == "breaker_open"], "the breaker opened on a 20% error rate"
    assert status.rate_source == "none" and status.rpm is None  # 429s that name no limit are weak evidence
    assert wall < 10.0  # about 1.3 s here; before, 4 minutes (each random 429 cut the learned rate)


@pytest.mark.slow
def test_an_outage_opens_the_breaker_fast_only_trials_go_and_every_row_ends_ok(tmp_path):
    """100% 503 for 2 s in the middle of a run (after ~80 healthy requests), then healthy again."""
    healthy = Faults(latency=0.02)
    down = Faults(error_rates={503: 1.0}, retry_after=None, latency=0.02)
    outage_s = 2.0
    with ProviderServer(answer=chat(answer="ok"), api_key=KEY, faults=healthy) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as rt:
        events: list = []
        rt.actors.subscribe(events.append)
        lm = default_lm(server)

        def outage() -> None:
            if wait_until(lambda: len(server.log) >= 80, timeout=20):
                server.set_faults(down)
                time.sleep(outage_s)
                server.set_faults(healthy)

        saboteur = threading.Thread(target=outage, daemon=True)
        saboteur.start()
        result = dspex.Evaluate(devset(300), same, workers=0, progress=False, max_concurrency=32).run(
            dspex.Predict("question -> answer", lm=lm))
        saboteur.join(timeout=5)
        log = server.log
        status = lm.status()
    trial_calls = dspex.Breaker().trial_calls
    assert [r.error for r in result.rows if r.error is not None] == []
    assert status.breaker == "closed"
    changes = [(e.kind, e.at) for e in events if getattr(e, "kind", "").startswith("breaker_")]
    kinds = [k for k, _ in changes]
    assert kinds[0] == "breaker_open" and kinds[-1] == "breaker_closed", kinds
    first_503 = min(e.at for e in log if e.status == 503)
    assert changes[0][1] - first_503 < 2.0  # open within 2 s of the outage
    # while open nothing is sent; while half-open, at most the trial calls
    slack = 0.25  # a request leased just before the breaker opened may reach the server a moment later
    for (kind, since), (_, until) in zip(changes, changes[1:]):
        arrived = [e for e in log if since + slack < e.at < until]
        if kind == "breaker_open":
            assert arrived == [], f"{len(arrived)} requests sent while the breaker was open"
        elif kind == "breaker_half_open":
            assert len([e for e in log if since <= e.at < until]) <= trial_calls
    assert sum(1 for e in log if e.status == 503) < 200  # the outage cost a few calls per row, not a storm


def test_a_local_model_that_times_out_is_slow_not_down(tmp_path):
    """A busy machine makes a local model time out: its breaker stays closed (a remote one still opens)."""
    from concurrent.futures import ThreadPoolExecutor

    with ProviderServer(answer="ok", faults=Faults(hang_rate=1.0, hang_s=1.0)) as server, \
            dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        local = dspex.LM("local/slow", base_url=server.base_url(), timeout=0.2, retries=0, cache=False)
        remote = dspex.LM("openai/slow", api_key=KEY, base_url=server.base_url(), timeout=0.2, retries=0, cache=False,
                          rpm=None, breaker=dspex.Breaker(max_wait=0, timeout_grace=0.1))  # (default 2 s: the run is shorter)

        def outcome(lm, i):
            try:
                return lm.request(f"q{i}").text
            except dspex.LMError as exc:
                return type(exc).__name__

        with ThreadPoolExecutor(8) as pool:
            local_outcomes = list(pool.map(lambda i: outcome(local, i), range(32)))
            remote_outcomes = list(pool.map(lambda i: outcome(remote, i), range(64)))
        local_status, remote_status = local.status(), remote.status()
    assert set(local_outcomes) == {"LMTimeout"}
    assert (local_status.breaker, local_status.breaker_trips) == ("closed", 0)
    assert remote_status.breaker_trips == 1 and "CircuitOpen" in remote_outcomes  # timeouts of a provider count


@pytest.mark.parametrize("bad", [{"min_calls": 0}, {"trial_calls": 0}, {"max_wait": -1.0}, {"max_wait": float("inf")},
                                 {"min_calls": 200}, {"min_calls": 2.5}, {"timeout_grace": -0.5}])
def test_breaker_settings_are_checked(bad):
    with pytest.raises(dspex.ConfigError):
        dspex.Breaker(**bad)
