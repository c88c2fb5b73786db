"""Each layer of the request pipeline alone, with in-memory stand-ins below it (no actor, no HTTP),
and the batcher that the cache's disk writes and a worker's success reports share."""

from __future__ import annotations

import threading
import time
from collections import deque

import pytest

from dspex.clients.batcher import Batcher
from dspex.clients.cache import ResponseCache
from dspex.clients.coalesced import CoalescedChannel
from dspex.clients.config import LMConfig
from dspex.clients.messages import Completion, Lease, Release, Report
from dspex.clients.pipeline import Cached, DirectChannel, Leased, Pipeline, Remember, Request, Streamed
from dspex.clients.transport import AttemptResult
from dspex.errors import ProviderError
from dspex.primitives import Usage
from supervision.resilience.adaptive import Advert, RateHints

CFG = LMConfig("openai", "m", "http://127.0.0.1:1/v1", cache=True, retries=2)


def request(**changes) -> Request:
    return Request(**{"cfg": CFG, "messages": [{"role": "user", "content": "hi"}],
                      "sampling": {"temperature": 0.0, "max_tokens": 8}, "run": "r", **changes})


def ok(text: str = "yes", prompt: int = 3, completion: int = 2) -> AttemptResult:
    return AttemptResult("ok", 0.01, text, prompt, completion, "m-2024", status=200)


def failed(status: int = 500, prompt: int = 0) -> AttemptResult:
    return AttemptResult("status", 0.01, status=status, prompt_tokens=prompt)


class FakeChannel:
    """Grants leases at once; a failed attempt's report gets the next lease (or the error, past ``retries``)."""

    def __init__(self, price=None, retries: int = 2) -> None:
        self.price, self.retries, self.sent = price, retries, []

    def admit(self, admit):
        self.sent.append(admit)
        return Lease(1, 0, self.price)

    def failed(self, report):
        self.sent.append(report)
        if report.attempt >= self.retries:
            raise ProviderError("gave up", "openai/m", report.attempt + 1, status=report.outcome.status)
        return Lease(report.lease + 1, report.attempt + 1, self.price)

    def succeeded(self, report):
        self.sent.append(report)

    def release(self, lease, run):
        self.sent.append(Release(lease, run))

    def cache_hit(self, run):
        self.sent.append(("hit", run))


def test_leased_retries_under_new_leases_and_costs_every_billed_attempt():
    results = iter([failed(prompt=4), ok()])
    chan = FakeChannel(price=(1_000_000.0, 2_000_000.0))
    comp = Leased(lambda req: next(results), chan)(request())
    admit, first, success = chan.sent
    assert admit.run == "r" and admit.retries == 2 and admit.max_completion == 8
    assert isinstance(first, Report) and first.attempt == 0 and not first.outcome.ok
    assert isinstance(success, Report) and success.outcome.ok and success.lease == 2
    assert (comp.text, comp.attempts, comp.model) == ("yes", 2, "m-2024")
    assert comp.usage == Usage(7, 2) and comp.cost == pytest.approx(7 + 4)  # the failed attempt's prompt too


def test_leased_raises_the_typed_error_of_the_last_report():
    with pytest.raises(ProviderError, match="gave up"):
        Leased(lambda req: failed(), FakeChannel(retries=1))(request())


def test_leased_gives_the_lease_back_when_an_attempt_ends_without_an_outcome():
    chan = FakeChannel()

    def interrupted(req):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Leased(interrupted, chan)(request())
    assert chan.sent[-1] == Release(1, "r")


class FakeTransport:
    def __init__(self, pieces, result):
        self.pieces, self.result = pieces, result

    def attempt(self, messages, params, on_text=None):
        for piece in self.pieces:
            if on_text is not None:
                on_text(piece)
        return self.result


def test_streamed_voids_a_failed_attempts_text_and_sends_a_whole_answer_as_one_piece():
    got: list = []
    assert not Streamed(FakeTransport(["par", "tial"], failed()))(request(stream=got.append)).ok
    assert got == ["par", "tial", None]
    got.clear()
    Streamed(FakeTransport([], ok("whole")))(request(stream=got.append))
    assert got == ["whole"]
    got.clear()
    Streamed(FakeTransport(["a", "b"], ok("ab")))(request(stream=got.append))
    assert got == ["a", "b"]
    assert Streamed(FakeTransport(["x"], ok("x")))(request()).text == "x"  # no sink: nothing streamed


def test_cached_answers_a_hit_without_the_layer_below_and_counts_it():
    calls = []

    def below(req):
        calls.append(req)
        return Completion("fresh", Usage(1, 1), 0.5, "m", 0.1)

    chan, cache, streamed = FakeChannel(), ResponseCache(None), []
    layer = Cached(below, cache, chan)
    assert layer(request()).text == "fresh"
    assert layer(request()).cached
    hit = layer(request(stream=streamed.append))
    assert hit.cached and hit.cost == 0.0 and hit.attempts == 0 and len(calls) == 1
    assert streamed == ["fresh"] and chan.sent.count(("hit", "r")) == 2
    assert not layer(request(rollout=1)).cached  # another rollout is another entry
    Cached(below, cache, chan)(request(cfg=LMConfig("openai", "m", CFG.base_url, cache=False)))
    assert len(calls) == 3  # a handle with cache=False never reads it


def test_remember_keeps_dspy_history_entries_bounded():
    history: deque = deque(maxlen=2)
    layer = Remember(lambda req: Completion("a", Usage(2, 3), 0.25, "m-2024", 0.1), history)
    for i in range(3):
        layer(request(given=f"q{i}", overrides={"temperature": 0.5}))
    assert len(history) == 2
    entry = history[-1]
    assert entry["prompt"] == "q2" and entry["kwargs"] == {"temperature": 0.5} and entry["outputs"] == ["a"]
    assert entry["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert (entry["model"], entry["response_model"], entry["cost"]) == ("openai/m", "m-2024", 0.25)


class Stub:
    def close(self):
        pass


def test_the_channel_is_chosen_once_direct_in_the_actors_process_else_coalesced():
    direct = Pipeline(Stub(), ResponseCache(None), None, deque(), direct=True)  # type: ignore[arg-type]
    coalesced = Pipeline(Stub(), ResponseCache(None), None, deque(), direct=False)  # type: ignore[arg-type]
    assert type(direct.channel) is DirectChannel and type(coalesced.channel) is CoalescedChannel
    direct.close()
    coalesced.close()


def test_the_batcher_sends_in_order_replaces_a_pending_key_and_sends_at_once_after_close():
    sent: list = []
    batcher = Batcher(sent.append, interval=0.3, name="test-batcher")
    threads = [threading.Thread(target=batcher.add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.add(("k", 1), key="k")
    batcher.add(("k", 2), key="k")
    assert batcher.pending("k") == ("k", 2)
    deadline = time.monotonic() + 5
    while sum(len(b) for b in sent) < 9 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(x for b in sent for x in b if isinstance(x, int)) == list(range(8))
    assert [x for b in sent for x in b if isinstance(x, tuple)] == [("k", 2)]
    assert len(sent) <= 3  # gathered, not one send per item
    batcher.close()
    batcher.add("late")
    assert sent[-1] == ["late"]


def test_an_item_added_after_a_take_waits_its_own_interval():
    # a worker takes its reports to send with its rows; one added just after must not go alone at the end of
    # the interval the taken ones started (a message of its own, a moment before the next rows take it)
    sent: list = []
    batcher = Batcher(sent.append, interval=0.4, name="test-batcher")
    batcher.add("taken")
    time.sleep(0.3)
    assert batcher.take() == ["taken"]
    batcher.add("next")
    time.sleep(0.25)  # past the first item's interval, within the second's
    assert sent == []
    deadline = time.monotonic() + 5
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sent == [["next"]]
    batcher.close()


def test_a_429_naming_a_limit_holds_this_processs_other_leased_attempts_until_its_retry_after():
    """The caller that got a 429 that is congestion (it names the limit) with Retry-After holds the
    process's attempts already leased (they wait it out before sending), without waiting for its report
    to reach the client actor; the hold only delays."""
    from dspex.clients.pipeline import Hold

    hold = Hold()
    first_answered = threading.Event()
    sent_at: dict[str, float] = {}

    def attempt(req: Request) -> AttemptResult:
        who = req.messages[0]["content"]
        sent_at.setdefault(who, time.monotonic())
        if who == "first" and not first_answered.is_set():
            first_answered.set()
            return AttemptResult("status", 0.01, status=429, retry_after=0.3,
                                 hints=RateHints(requests=Advert(limit=60, remaining=0)))
        return ok()

    leased = Leased(attempt, FakeChannel(), hold)
    start = time.monotonic()
    first = threading.Thread(target=leased, args=(request(messages=[{"role": "user", "content": "first"}]),))
    first.start()
    first_answered.wait(5)
    leased(request(messages=[{"role": "user", "content": "second"}]))  # leased, then held before it sends
    first.join(5)
    assert sent_at["second"] - start >= 0.29
    assert Hold(clock=lambda: 0.0).until == 0.0  # nothing held until a 429 says so
    capped = Hold(clock=lambda: 100.0)
    capped.extend(3600)
    assert capped.until == 100.0 + Hold.MAX


def test_scattered_429s_hold_nothing_until_they_are_a_sustained_share():
    """A 429 naming no limit holds only its own request (its retry's delay), until 429s are half of at
    least ten recent answers: then each one's Retry-After holds the process's leased attempts."""
    from dspex.clients.pipeline import Hold

    now = [0.0]
    hold = Hold(clock=lambda: now[0])
    busy = AttemptResult("status", 0.01, status=429, retry_after=2.0)
    for _ in range(20):
        hold.observe(ok())
    hold.observe(busy)
    assert hold.until == 0.0  # 1 in 21: chance, not congestion
    for _ in range(19):
        hold.observe(busy)
    assert hold.until == 2.0  # 20 of 40: congestion
    now[0] = 30.0  # the answers of long ago no longer count
    hold.observe(busy)
    assert hold.until == 2.0
