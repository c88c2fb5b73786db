"""AdaptiveRate: the pure decision of which rate is in force (fake clock)."""

from __future__ import annotations

import pytest

from supervision import SpecError
from supervision.resilience.adaptive import AdaptiveRate, Advert, RateHints, RateSource


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def hints(rpm: float | None = None, tpm: float | None = None, remaining: float | None = None) -> RateHints:
    return RateHints(Advert(rpm, remaining, 1.0) if rpm else None, Advert(tpm, None, 1.0) if tpm else None)


def test_auto_starts_unthrottled_and_probes_once():
    rate = AdaptiveRate()
    assert (rate.rpm, rate.tpm, rate.source, rate.probing) == (None, None, RateSource.NONE, True)
    assert rate.answered(None)  # the probe ended: that is a change
    assert (rate.rpm, rate.source, rate.probing) == (None, RateSource.NONE, False)


def test_advertised_limits_are_adopted_and_followed_down_and_up():
    rate = AdaptiveRate()
    rate.answered(hints(rpm=600, tpm=90000))
    assert (rate.rpm, rate.tpm, rate.source, rate.tpm_source) == (600, 90000, RateSource.ADVERTISED,
                                                                  RateSource.ADVERTISED)
    rate.answered(hints(rpm=300))  # the limit dropped mid-run
    assert (rate.rpm, rate.source) == (300, RateSource.ADVERTISED)
    rate.answered(hints(rpm=900))
    assert rate.rpm == 900


def test_aimd_decreases_on_429_and_climbs_back_never_above_the_advert():
    rate = AdaptiveRate()
    rate.answered(hints(rpm=600))
    assert rate.throttled_by_server(hints=hints(rpm=600))  # a 429 naming its limit: strong evidence, cut at once
    assert rate.rpm == pytest.approx(420) and rate.source is RateSource.LEARNED
    steps = 0
    while rate.source is RateSource.LEARNED:
        rate.succeeded()
        steps += 1
        assert rate.rpm <= 600
    assert rate.rpm == 600 and rate.source is RateSource.ADVERTISED and 10 < steps < 100
    rate.answered(hints(rpm=300))  # an advert below the learned rate wins at once
    assert rate.rpm == 300


def test_429s_naming_no_limit_cut_the_rate_only_once_they_are_a_sustained_share():
    """A 429 without rate headers (Retry-After 0 or none) is weak evidence: a server really over its limit
    soon answers 429 to most requests; then the first decrease comes from the measured sending rate."""
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    for _ in range(50):  # 10 accepted a second for 5 s
        rate.answered(None)
        rate.succeeded()
        clock.now += 0.1
    throttles = 0
    while True:
        rate.answered(None)
        throttles += 1
        if rate.throttled_by_server():
            break
        assert rate.source is RateSource.NONE and rate.rpm is None
        clock.now += 0.01
    assert throttles == 50  # half of the last 10 s's 100 answers
    assert rate.source is RateSource.LEARNED
    assert rate.rpm == pytest.approx(50 * 60 / 5.5 * 0.7, rel=0.05)
    before = rate.rpm
    rate.succeeded()
    assert rate.rpm > before  # no advert: no ceiling


def test_scattered_429s_naming_no_limit_leave_the_rate_alone():
    """20% 5xx + 10% 429 (Retry-After: 0) at 100 answers a second for a minute: never a decrease."""
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    for i in range(6000):
        rate.answered(None)
        if i % 10 == 3:
            assert not rate.throttled_by_server(sent_at=clock.now - 0.05)
        elif i % 10 not in (5, 7):
            rate.succeeded()
        clock.now += 0.01
    assert (rate.rpm, rate.source, rate.throttled) == (None, RateSource.NONE, 600)


def test_a_429_with_rate_headers_is_strong_evidence_even_alone():
    rate = AdaptiveRate()
    for _ in range(100):
        rate.answered(hints(rpm=600))
        rate.succeeded()
    rate.answered(hints(rpm=600))  # one 429 in 101 answers, but it names the limit
    assert rate.throttled_by_server(hints=hints(rpm=600))
    assert (rate.rpm, rate.advertised_rpm, rate.source) == (pytest.approx(420), 600, RateSource.LEARNED)


def test_fixed_and_none_never_move():
    for setting, source in ((120.0, RateSource.FIXED), (None, RateSource.NONE)):
        rate = AdaptiveRate(rpm=setting, tpm=None)
        assert not rate.probing
        rate.answered(hints(rpm=600))
        rate.throttled_by_server()
        rate.succeeded()
        assert (rate.rpm, rate.source) == (setting, source)
        assert rate.throttled == 1


@pytest.mark.parametrize("bad", [0, -5, "fast", float("nan")])
def test_bad_settings_are_spec_errors(bad):
    with pytest.raises(SpecError):
        AdaptiveRate(rpm=bad)
