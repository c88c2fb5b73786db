"""rpm="auto" (the default): no cap until the provider names one; advertised limits, 429s and AIMD."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import dspex
from dspex.testing import ProviderServer
from dspex.testing.faults import Faults
from dspex.testing.limits import ServerLimits

from .conftest import KEY


def auto_lm(server, provider="openai", **options):
    """A handle as a new user writes it: no rpm=, no tpm=."""
    return dspex.LM(f"{provider}/adaptive", api_key=KEY, base_url=server.base_url(provider), cache=False,
                    **options)


def run(lm, n, threads):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: lm(f"q{i}")[0], range(n)))


def rate_per_s(log, skip=0):
    times = sorted(e.at for e in log if e.status == 200)[skip:]
    return (len(times) - 1) / (times[-1] - times[0])


def test_by_default_nothing_throttles_a_server_that_names_no_limit(drt):
    # 200 ms answers: 64 threads started within ~150 ms of each other (a cold process on 2 busy cores) still
    # overlap at the server
    with ProviderServer(answer=lambda r: "ok", api_key=KEY, faults=Faults(latency=0.2)) as server:
        lm = auto_lm(server)
        run(lm, 2, 2)  # warm: the first request probes alone, and a cold process (first test of a fresh clone,
        # nothing compiled yet) does not count against the concurrency measured next
        start = time.monotonic()
        assert run(lm, 128, 64) == ["ok"] * 128
        wall = time.monotonic() - start
        status = lm.status()
    assert (status.rpm, status.tpm, status.rate_source, status.throttled) == (None, None, "none", 0)
    assert server.peak_concurrency >= 48  # 64 threads really were in flight together
    assert wall < 1.5  # two waves of 200 ms, not 128 rate slots


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_advertised_limits_are_adopted_with_few_429s(drt, provider):
    limits = ServerLimits(rpm=1800, tpm=10_000_000)  # 30 a second, bursts of 30
    with ProviderServer(answer=lambda r: "ok", api_key=KEY, limits=limits, faults=Faults(latency=0.01)) as server:
        lm = auto_lm(server, provider)
        assert run(lm, 150, 32) == ["ok"] * 150
        status = lm.status()
        throttled = len(server.throttled())
    assert status.rate_source in ("advertised", "learned") and status.advertised_rpm == 1800
    assert status.tpm == 10_000_000 and status.tpm_source == "advertised"
    assert status.rpm <= 1800
    assert throttled < 0.05 * 150, f"{throttled} requests answered 429"
    assert rate_per_s(server.log, skip=30) <= 30 * 1.15  # after the first burst: at most the limit


def test_a_limit_that_drops_mid_run_is_followed(drt):
    with ProviderServer(answer=lambda r: "ok", api_key=KEY, limits=ServerLimits(rpm=2400),
                        faults=Faults(latency=0.01)) as server:
        lm = auto_lm(server)
        run(lm, 80, 16)
        assert lm.status().advertised_rpm == 2400
        server.set_limits(ServerLimits(rpm=600))  # 10 a second from now on
        server.clear_log()
        assert run(lm, 40, 16) == ["ok"] * 40
        status = lm.status()
        log = server.log
    assert status.advertised_rpm == 600 and status.rpm <= 600
    assert len([e for e in log if e.fault == "rate_limit"]) <= 6  # the first burst against the new limit
    assert rate_per_s(log, skip=10) <= 10 * 1.2


def test_429s_without_adverts_teach_a_rate(drt):
    """Gemini names no limit in its headers: the client learns one from the 429s it gets (AIMD)."""
    with ProviderServer(answer=lambda r: "ok", api_key=KEY, limits=ServerLimits(rpm=1200),
                        faults=Faults(latency=0.01)) as server:
        lm = auto_lm(server, "gemini", retries=8)
        assert run(lm, 120, 32) == ["ok"] * 120
        status = lm.status()
        throttled = len(server.throttled())
    assert status.rate_source == "learned" and status.advertised_rpm is None
    assert status.throttled == throttled > 0
    assert status.rpm < 1200 * 1.5
    # learned, not one 429 per request: 24-63 in runs on this machine (timing-dependent); a client that does not
    # learn (rpm=None) under this load exhausts its retries (several 429s a request) and fails
    assert throttled < 120


def test_a_fixed_rpm_is_a_cap_and_says_so(drt):
    with ProviderServer(answer=lambda r: "ok", api_key=KEY, limits=ServerLimits(rpm=6000)) as server:
        lm = auto_lm(server, rpm=120)
        run(lm, 4, 4)
        status = lm.status()
    assert (status.rpm, status.rate_source) == (120, "fixed")
    with ProviderServer(answer=lambda r: "ok", api_key=KEY) as server:
        assert auto_lm(server, rpm=None, name="off").status().rate_source == "none"
