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
    assert rate.throttled_by_server()
    assert rate.rpm == pytest.approx(420) and rate.source is RateSource.LEARNED
    steps = 0
    while rate.source is RateSource.LEARNED:
        rate.succeeded()
        steps += 1
        assert rate.rpm <= 600
    assert rate.rpm == 600 and rate.source is RateSource.ADVERTISED and 10 < steps < 100
    rate.answered(hints(rpm=300))  # an advert below the learned rate wins at once
    assert rate.rpm == 300


def test_a_first_429_without_adverts_learns_from_the_sending_rate():
    clock = Clock()
    rate = AdaptiveRate(clock=clock)
    rate.answered(None)
    for _ in range(50):  # 10 accepted a second for 5 s
        rate.succeeded()
        clock.now += 0.1
    rate.throttled_by_server()
    assert rate.source is RateSource.LEARNED
    assert rate.rpm == pytest.approx(600 * 0.7, rel=0.05)
    before = rate.rpm
    rate.succeeded()
    assert rate.rpm > before  # no advert: no ceiling


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
