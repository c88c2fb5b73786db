"""Leases held ahead of need (``dspex.clients.ahead``): what is asked for ahead, what a lease held may serve,
when it goes back. Pure, with an injected clock; the channel and the actor's side are tested with a real
client actor below."""

from __future__ import annotations

import pytest

from dspex.clients.ahead import Ahead, fits
from dspex.clients.messages import Admit, Lease

HOLDER = ("node", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admit(est: int = 10, run: str | None = "r", prompt: int = 20, completion: int = 30) -> Admit:
    return Admit(est, run, HOLDER, None, prompt, completion)


def test_need_is_measured_over_the_last_second_and_what_is_held_counts():
    clock = Clock()
    ahead = Ahead(0.5, 1.0, 16, clock)
    for _ in range(10):  # ten admissions in the last second: five are needed in the next half second
        assert ahead.take(admit()) is None
        clock.now += 0.05
    extras = ahead.extras([admit()])
    assert len(extras) == 5
    ahead.add(extras, [Lease(i, 0) for i in range(3)] + [None, None])  # the actor had three free
    assert len(ahead.held) == 3
    assert len(ahead.extras([admit()])) == 2  # what is held counts against the need
    clock.now += 2.0  # a quiet second: nothing measured, nothing asked for ahead
    ahead.take(admit())
    assert ahead.extras([admit()]) == []


def test_extras_are_larger_than_the_largest_recent_request_of_the_same_run():
    clock = Clock()
    ahead = Ahead(0.5, 1.0, 16, clock)
    for est, prompt in ((10, 20), (40, 90), (25, 30)):
        ahead.take(admit(est, prompt=prompt))
    ahead.take(admit(999, run="other", prompt=999))
    extras = ahead.extras([admit(5, prompt=5)])
    assert extras and all(e.est_tokens == 50 and e.max_prompt == 113 and e.run == "r" for e in extras)


def test_a_request_a_little_larger_than_the_last_ones_fits_a_lease_held_ahead():
    # numbered questions grow a token now and then: each would miss a lease sized exactly (a message each)
    clock = Clock()
    ahead = Ahead(0.5, 1.0, 16, clock)
    for _ in range(10):
        ahead.take(admit(204, prompt=586))
    extras = ahead.extras([admit(204, prompt=586)])
    ahead.add(extras, [Lease(i, 0) for i in range(len(extras))])
    assert ahead.take(admit(205, prompt=588)) is not None


def test_leases_held_for_the_run_before_do_not_count_against_a_new_runs_need():
    # an evaluation's next run starts while the last one's leases wait to expire: they fit none of its
    # requests, so without this each of them would ask alone until those expired
    clock = Clock()
    ahead = Ahead(2.0, 4.0, 64, clock)
    for _ in range(10):
        ahead.take(admit(run="run-1"))
    extras = ahead.extras([admit(run="run-1")])
    ahead.add(extras, [Lease(i, 0) for i in range(len(extras))])
    clock.now += 1.5  # run-1 is over; its 20 leases are held for 2.5 s more
    for _ in range(5):
        ahead.take(admit(run="run-2"))
    assert len(ahead.extras([admit(run="run-2")])) == 10  # two seconds of run-2's five a second


def test_at_most_one_message_worth_and_none_when_disabled():
    clock = Clock()
    ahead = Ahead(0.5, 1.0, 4, clock)
    for _ in range(100):
        ahead.take(admit())
    assert len(ahead.extras([admit(), admit()])) == 2  # 4 in one message: two asked, two ahead
    assert Ahead(0.0, 1.0, 4, clock).extras([admit()]) == []


def test_a_held_lease_serves_only_a_request_it_fits():
    assert fits(admit(10, prompt=20, completion=30), admit(10, prompt=20, completion=30))
    assert fits(admit(10, prompt=20, completion=30), admit(5, prompt=1, completion=1))
    assert not fits(admit(10), admit(11))  # more tokens than the lease was granted for
    assert not fits(admit(10, prompt=20), admit(10, prompt=21))
    assert not fits(admit(10, completion=30), admit(10, completion=31))
    assert not fits(admit(run="a"), admit(run="b"))  # another run's budget
    assert not fits(Admit(10, "r", HOLDER, 3, 20, 30), Admit(10, "r", HOLDER, 2, 20, 30))  # other retries


def test_take_uses_a_fitting_lease_and_time_is_up_after_held_for():
    clock = Clock()
    ahead = Ahead(0.5, 1.0, 16, clock)
    ahead.add([admit(10), admit(50)], [Lease(1, 0), Lease(2, 0)])
    assert ahead.take(admit(40)).id == 2  # the first that fits
    assert ahead.take(admit(40)) is None
    assert ahead.next_expiry() == pytest.approx(101.0)
    clock.now += 0.99
    assert ahead.expired() == []
    clock.now += 0.02
    assert ahead.take(admit(5)) is None  # its time is up: never used
    assert ahead.expired() == [1] and not ahead.held


def test_drain_gives_back_everything_held():
    ahead = Ahead(0.5, 1.0, 16, Clock())
    ahead.add([admit()] * 3, [Lease(1, 0), None, Lease(3, 0)])
    assert ahead.drain() == [1, 3] and ahead.next_expiry() is None


def test_held_for_must_exceed_ahead():
    with pytest.raises(ValueError, match="held_for"):
        Ahead(1.0, 0.5, 16)


# --- a process holding leases ahead, against a real client actor in another process --------------------------

def _counting_calls(monkeypatch):
    """Count the admission messages this process sends its client actor (the real call still goes)."""
    from dspex.clients import pipeline
    from dspex.clients.messages import AdmitBatch

    asked = []
    real = pipeline.ClientLink.call

    def call(self, message, *args, **kwargs):
        if isinstance(message, (Admit, AdmitBatch)):
            asked.append(message)
        return real(self, message, *args, **kwargs)

    monkeypatch.setattr(pipeline.ClientLink, "call", call)
    return asked


def _holding_ahead(rt, server):
    """An LM of ``rt`` whose process holds leases ahead, as an evaluation worker on another host does."""
    from .conftest import make_lm

    rt.engines.lease_ahead = 0.5
    return make_lm(server, retries=0)


def _requests(lm, prefix: str, n: int) -> None:
    """``n`` requests, four at a time."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda p: lm.request(p), [f"{prefix}{i}" for i in range(n)]))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["threads", "async"])
def test_a_process_holding_leases_ahead_asks_seldom_and_books_exactly(server, tmp_path, monkeypatch, engine):
    import time
    from concurrent.futures import ThreadPoolExecutor

    import dspex
    from dspex.testing import Faults

    from .conftest import make_lm

    asked = _counting_calls(monkeypatch)
    server.set_faults(Faults(latency=0.05))
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None) as rt:
        rt.engines.lease_ahead = 0.5  # what an evaluation worker on another host sets
        lm = make_lm(server, retries=0)
        prompts = [f"p{i}" for i in range(80)]
        if engine == "threads":
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda p: lm.request(p).text, prompts))
        else:
            import asyncio

            async def all_of() -> list:
                gate = asyncio.Semaphore(4)

                async def one(p: str) -> str:
                    async with gate:
                        return (await lm.arequest(p)).text
                return await asyncio.gather(*(one(p) for p in prompts))
            answers = rt.engines.loop.submit(all_of()).result(60)
        assert answers == [f"ans:{p}" for p in prompts]
        assert len(asked) < len(prompts) / 2, len(asked)  # most requests took a lease held ahead
        usage = lm.usage()
        assert usage.requests == 80 and usage.ok == 80 and len(server.log) == 80  # nothing booked twice or unsent
        deadline = time.monotonic() + 3.0  # the leases nobody used go back within HELD_FOR, unbooked
        while lm.status().in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lm.status().in_flight == 0
        assert lm.usage().requests == 80


@pytest.mark.slow
def test_a_failed_attempt_gives_back_every_lease_held(server, tmp_path):
    import dspex
    from dspex.testing import Faults

    server.set_faults(Faults(latency=0.05))
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None) as rt:
        lm = _holding_ahead(rt, server)
        _requests(lm, "p", 40)
        rt.engines.flush()
        assert lm.status().in_flight > 0  # leases are held ahead of the next requests
        server.set_faults(Faults(schedule=["500"]))
        with pytest.raises(dspex.LMError):
            lm.request("fails")
        rt.engines.flush()  # the successes' reports (batched) are in too
        assert lm.status().in_flight == 0  # given back with the failure's report, not HELD_FOR later


@pytest.mark.slow
def test_reports_taken_for_a_call_that_failed_go_back_and_a_report_sent_twice_is_booked_once(server, tmp_path):
    """An evaluation worker on a host takes its success reports to send with its rows; when that call fails
    (its link down), they are put back and go the usual way; when the call did arrive after all, the client
    actor books the second copy of a report not again."""
    import time

    import dspex
    from dspex.clients.messages import ReportBatch
    from dspex.testing import Faults

    def settles_at(lm, expected: int) -> int:
        deadline = time.monotonic() + 5.0
        while lm.usage().requests < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        return lm.usage().requests

    server.set_faults(Faults(latency=0.02))
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None) as rt:
        lm = _holding_ahead(rt, server)
        _requests(lm, "a", 20)
        taken = rt.engines.take_reports()
        assert sum(len(reports) for _, reports in taken) > 0
        rt.engines.put_back_reports(taken)  # the call that was to carry them failed
        rt.engines.flush()
        assert settles_at(lm, 20) == 20

        _requests(lm, "b", 20)
        taken = rt.engines.take_reports()
        for address, reports in taken:  # the call did arrive: the coordinator relayed them ...
            rt.actors.cast(address, ReportBatch(tuple(reports)))
        rt.engines.put_back_reports(taken)  # ... and its answer was lost, so they go again
        rt.engines.flush()
        assert settles_at(lm, 40) == 40 == len(server.log)


def test_a_grant_after_a_recall_drops_what_is_held_and_one_from_before_goes_back(monkeypatch):
    from dspex.clients.coalesced import ReportingChannel
    from dspex.clients.messages import GiveBack

    class Link:
        def __init__(self) -> None:
            self.back: list = []

        def cast(self, message) -> None:
            if isinstance(message, GiveBack):
                self.back.extend(message.leases)

    link = Link()
    channel = ReportingChannel(link, ahead=0.5)
    monkeypatch.setattr(channel, "_watch", lambda: None)  # (the watch's long poll is tested below)
    channel.hold([admit()], [Lease(1, 0)], recalls=100)
    channel.hold([admit()], [Lease(2, 0)], recalls=105)  # a recall came (or the actor restarted) since lease 1
    assert link.back == [1] and channel.held_lease(admit()).id == 2
    channel.hold([admit()], [Lease(3, 0)], recalls=100)  # granted before the recall heard
    assert link.back == [1, 3] and channel.held_lease(admit()) is None
    channel.close()


@pytest.mark.slow
def test_leases_held_ahead_go_back_at_once_when_another_process_opens_the_breaker(server, tmp_path):
    """A host holds seconds of leases ahead; when the breaker opens on other hosts' failures, the client
    actor's recall reaches it at once (its watch), not when the leases expire (``held_for``: 4 s here)."""
    import time

    import dspex
    from dspex.clients.messages import Admit, Report
    from dspex.clients.transport import AttemptResult
    from dspex.testing import Faults

    from .conftest import make_lm

    server.set_faults(Faults(latency=0.05))
    with dspex.runtime("multiproc", cache_dir=tmp_path, log_level=None) as rt:
        rt.engines.lease_ahead = 2.0
        lm = make_lm(server, retries=0)
        _requests(lm, "p", 40)
        rt.engines.flush()
        assert lm.status().in_flight > 0  # leases are held ahead of the next requests
        link = lm._pipeline.link  # another holder, as the actor sees it: this process's channel hears nothing
        for i in range(200):
            if lm.status().breaker == "open":
                break
            lease = link.call(Admit(10, None, ("another-host", 1), 0, 20, 30))
            with pytest.raises(dspex.LMError):
                link.call(Report(lease.id, AttemptResult("status", 0.01, status=500, detail="down")))
        assert lm.status().breaker == "open"
        opened = time.monotonic()
        while lm.status().in_flight and time.monotonic() - opened < 3.0:
            time.sleep(0.02)
        assert lm.status().in_flight == 0
        assert time.monotonic() - opened < 1.0  # (before: they stayed until their 4 s were up)
        assert lm.usage().requests == 40 + i  # given back unbooked
