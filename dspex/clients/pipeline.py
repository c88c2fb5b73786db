"""One LM request, as layers around the transport (httpx's ``send`` → auth → redirects → transport):

    Pipeline.send(request)
      remember    lm.history / dspex.inspect_history, with DSPy's keys (never a key); dspex.track_usage() totals
      cached      the response cache: a hit is free, takes no lease, is counted by the client actor
                  (``CacheHit``) and streams as one piece
      leased      the client actor's lease for each attempt (admission: budget, backoff, rate, room,
                  breaker), the attempt, its outcome reported back; a failure's report answers with the
                  next attempt's lease or the typed error. An attempt that ends without an outcome
                  (Ctrl-C, a bug below) gives its lease back at once (``Release``). A 429 with a
                  ``Retry-After`` that is congestion (it names a limit, or 429s are a sustained share)
                  holds this process's other leased attempts at once (:class:`Hold`), before its report
                  reaches the client actor, which pauses every process; a scattered one, only its own.
                  On the event loop, an attempt still unanswered after the hedging delay gets twins,
                  each on a lease of its own; the first answer wins (``hedging``, ``Pipeline._hedge``).
      streamed    one attempt through the transport; with a stream sink, its text goes out as it comes,
                  a failed attempt's streamed text is declared void (``sink(None)``: a retry streams from
                  the start), an answer that came whole goes out as one piece
      Transport.attempt(messages, params, on_text) -> AttemptResult

Each layer is a callable taking a :class:`Request` and calling the one below, so each can be tested with
a stand-in below it. The client actor's side of admission is in ``client.py``.

How leases are asked for is the pipeline's lease channel, chosen once when the pipeline is made (one
pipeline per client and key in each process: ``engines.Engines``): in the client actor's own process (a
``local`` runtime), where a call costs microseconds, the :class:`DirectChannel` calls for each admission
and casts each success report; in any other process, where each is a cross-process round trip, the
``coalesced.CoalescedChannel`` asks for the admissions of many threads at once and batches the reports.
A failed attempt's report is a call either way (its answer is the next lease or the typed error).
Both talk through a :class:`ClientLink`: after the client actor exits, a call fails as ``ClientExited``
and the next one finds the actor its supervisor restarted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from supervision import ActorExited, ActorRef, procfs
from supervision.resilience.adaptive import ThrottleShare

from ..errors import ClientExited
from ..primitives import Usage
from .cache import ResponseCache, cache_key
from .async_channel import AsyncChannel
from .async_transport import AsyncTransport
from .coalesced import CoalescedChannel, ReportingChannel
from .event_loop import EventLoop
from .hedging import MAX_TWINS, Hedging
from .config import LMConfig
from .messages import HEDGED, Admit, CacheHit, Completion, Done, Lease, Release, Report, cache_entry, cached_completion
from .prices import cost_of, prompt_tokens_bound
from .scope import StreamSink
from .steps import Step, arun_steps, run_steps
from .transport import AttemptResult, Transport
from .usage_tracker import active_trackers
from .wire import estimate_prompt_tokens

Send = Callable[["Request"], Completion]
CALL_TIMEOUT = 24 * 3600.0  # a request may queue behind the limiter for long; a dead client is detected at once


@dataclass(frozen=True)
class Request:
    """One chat request of a handle. ``cfg`` is the handle's (its retries, cache flag, sampling);
    ``sampling`` is what is sent besides the messages; ``rollout`` tells apart deliberate repeats of one
    prompt in the cache (never sent); ``given`` and ``overrides`` are what the caller passed (history)."""

    cfg: LMConfig
    messages: list[dict]
    sampling: dict
    run: str | None = None
    rollout: int | None = None
    stream: StreamSink | None = None
    given: Any = None
    overrides: dict = field(default_factory=dict)

    def admit(self) -> Admit:
        """The admission request of attempt 0 (``est_tokens`` for the token limit; what an attempt whose
        report never comes is booked at; the asking process, so its leases come back if it dies)."""
        max_completion = int(self.sampling.get("max_tokens", self.cfg.max_tokens))
        est = estimate_prompt_tokens(self.messages) + max_completion  # images etc. at a stated budget
        return Admit(est, self.run, (procfs.node_id(), os.getpid()), self.cfg.retries,
                     max_prompt=prompt_tokens_bound(self.messages), max_completion=max_completion)


class Remember:
    """Keeps each answered request for ``lm.history`` (a bounded deque: the last N calls of the process)
    and counts it in the open ``dspex.track_usage()`` blocks."""

    def __init__(self, inner: Send, history: deque) -> None:
        self.inner, self.history = inner, history

    def __call__(self, request: Request) -> Completion:
        return self.record(request, self.inner(request))

    def record(self, request: Request, comp: Completion) -> Completion:
        self.history.append(history_entry(request, comp))
        for tracker in active_trackers():
            tracker.add(request.cfg.qualified, comp.usage.prompt_tokens, comp.usage.completion_tokens, comp.cost)
        return comp


class Cached:
    """The response cache, for handles with ``cache=True`` (the key: endpoint, model, messages, sampling, rollout)."""

    def __init__(self, inner: Send, cache: ResponseCache, channel: DirectChannel | CoalescedChannel) -> None:
        self.inner, self.cache, self.channel = inner, cache, channel

    def __call__(self, request: Request) -> Completion:
        key, hit = self.lookup(request)
        if hit is not None:
            return hit
        return self.store(key, self.inner(request))

    def lookup(self, request: Request) -> tuple[str | None, Completion | None]:
        """(the request's cache key, its cached completion) — (None, None) when it is not cached."""
        cfg = request.cfg
        if not cfg.cache or not self.cache.enabled:
            return None, None
        key = cache_key(cfg.provider, cfg.model, request.messages, {**request.sampling, "_rollout": request.rollout},
                        endpoint=cfg.base_url)
        hit = self.cache.get(key)
        if hit is None:
            return key, None
        self.channel.cache_hit(request.run)
        comp = cached_completion(hit)
        if request.stream is not None:
            request.stream(comp.text)  # a cached answer streams as one piece
        return key, comp

    def store(self, key: str | None, comp: Completion) -> Completion:
        if key is not None:
            self.cache.put(key, cache_entry(comp))
        return comp


class Hold:
    """A pause this process has just heard of (the ``Retry-After`` of a 429 that is congestion, as the client
    actor judges it: ``ThrottleShare``): attempts already leased wait it out before they send, instead of
    reaching a provider that asked for quiet while the report travels to the client actor. A scattered 429
    holds only its own request (its retry's delay). It only ever delays; the client actor still decides
    every admission."""

    MAX = 60.0  # seconds: a longer Retry-After is the client actor's to enforce (and its breaker's)

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.until, self.clock, self.sleep = 0.0, clock, sleep
        self.share = ThrottleShare(clock)
        self._lock = threading.Lock()  # the threads' engine observes from many threads

    def observe(self, outcome: AttemptResult) -> None:
        """Every answer of this process's attempts: a 429 that is congestion holds for its Retry-After."""
        with self._lock:
            self.share.answered()
            if outcome.status == 429:
                self.share.throttled()
                if outcome.retry_after and self.share.congestion(outcome.hints):
                    self.extend(outcome.retry_after)

    def extend(self, seconds: float) -> None:
        self.until = max(self.until, self.clock() + min(max(0.0, seconds), self.MAX))

    def wait(self) -> None:
        while (left := self.until - self.clock()) > 0:  # extended while asleep: sleep again
            self.sleep(left)

    async def await_(self) -> None:
        """``wait`` for a task on the event loop."""
        while (left := self.until - self.clock()) > 0:
            await asyncio.sleep(left)


def lease_steps(request: Request, channel: Any, hold: Hold) -> Generator[Step, Any, Completion]:
    """One request's attempts under leases of the client actor, as steps an engine performs (the threads'
    :class:`Leased` or the event loop's ``Pipeline.asend``): each blocking step is yielded and its result
    sent back; an exception raised by a step is thrown back in. Success reports and releases are one-way."""
    start = time.monotonic()
    reply: Lease | Done = yield ("admit", request.admit())
    billed = Usage()  # every attempt the provider counted (an empty answer is billed, then retried)
    while isinstance(reply, Lease):
        try:
            yield ("hold",)
            # (an engine that hedges answers with the lease whose attempt answered first: ``_attempt``)
            outcome: AttemptResult
            outcome, reply = yield ("attempt", request, reply)
        except BaseException:  # Ctrl-C, a cancelled task, a bug below: the lease goes back at once, never leaks
            channel.release(reply.id, request.run)
            raise
        hold.observe(outcome)
        billed = billed + Usage(outcome.prompt_tokens, outcome.completion_tokens,
                                outcome.prompt_tokens + outcome.completion_tokens if outcome.estimated else 0)
        report = Report(reply.id, outcome, reply.attempt, request.run)
        if outcome.ok:  # the holder knows the cost: one hop instead of a round trip
            channel.succeeded(report)
            reply = Done(cost_of(reply.price, billed.prompt_tokens, billed.completion_tokens), reply.attempt + 1)
        else:
            reply = yield ("failed", report)
    if not isinstance(reply, Done):  # the protocol allows only Lease or Done here
        raise TypeError(f"dspex bug: the client actor answered {type(reply).__name__} to a request")
    return Completion(text=outcome.text, usage=billed, cost=reply.cost, model=outcome.model or request.cfg.model,
                      latency_s=time.monotonic() - start, attempts=reply.attempts, extras=outcome.extras)


class Leased:
    """Attempts under leases of the client actor, on the calling thread (see :func:`lease_steps`)."""

    def __init__(self, attempt: Callable[[Request], AttemptResult],
                 channel: DirectChannel | CoalescedChannel, hold: Hold | None = None) -> None:
        self.attempt, self.channel = attempt, channel
        self.hold = hold if hold is not None else Hold()

    def __call__(self, request: Request) -> Completion:
        return run_steps(lease_steps(request, self.channel, self.hold), self._perform)

    def _perform(self, step: Step) -> Any:
        match step:
            case ("admit", admit):
                return self.channel.admit(admit)
            case ("hold",):
                return self.hold.wait()
            case ("attempt", request, lease):
                return self.attempt(request), lease
            case ("failed", report):
                return self.channel.failed(report)
        raise TypeError(f"dspex bug: unknown lease step {step!r}")


class Streamed:
    """One attempt through the transport, its text streamed to the request's sink (module docstring)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def __call__(self, request: Request) -> AttemptResult:
        sink = request.stream
        if sink is None:
            return self.transport.attempt(request.messages, request.sampling, None)
        streamed: list[str] = []

        def on_text(piece: str) -> None:
            streamed.append(piece)
            sink(piece)

        outcome = self.transport.attempt(request.messages, request.sampling, on_text)
        if not outcome.ok and streamed:
            sink(None)  # what this attempt streamed is void; a retry streams from the start
        if outcome.ok and not streamed:
            sink(outcome.text)  # a provider that answers whole (a local model) streams as one piece
        return outcome


class ClientLink:
    """Messages to one client actor (``find`` returns the running one: started on first use, found again
    after a restart)."""

    def __init__(self, find: Callable[[], ActorRef], model: str) -> None:
        self.find = find
        self.model = model
        self._ref: ActorRef | None = None

    def call(self, message: Any, timeout: float = CALL_TIMEOUT, patience: float = 0.0) -> Any:
        """``patience``: seconds the answer may take by design (a long poll; ``ActorRef.call``)."""
        return self._send(message, timeout, patience)

    def cast(self, message: Any) -> None:
        self._send(message, None)

    def call_future(self, message: Any, timeout: float = CALL_TIMEOUT) -> concurrent.futures.Future:
        """A call whose reply resolves the returned future, no thread waiting for it (an ``ActorExited`` in it
        is the caller's to turn into ``ClientExited``: :meth:`exited`)."""
        ref = self._ref
        if ref is None:
            ref = self._ref = self.find()
        return ref.call_future(message, timeout)

    def known(self) -> ActorRef | None:
        """The client actor found last (None before the first message, or after it exited)."""
        return self._ref

    def exited(self, exc: ActorExited) -> ClientExited:
        """The typed error of a call to a client actor that exited (the next call finds the restarted one)."""
        self._ref = None
        return ClientExited(f"the client actor exited ({exc.reason})", self.model)

    def _send(self, message: Any, timeout: float | None, patience: float = 0.0) -> Any:
        ref = self._ref
        if ref is None:
            ref = self._ref = self.find()
        try:
            return ref.cast(message) if timeout is None else ref.call(message, timeout, patience=patience)
        except ActorExited as exc:  # the supervisor restarts the client; the next request finds the new one
            raise self.exited(exc) from None


class DirectChannel:
    """Leases straight from the client actor, in its own process (see the module docstring)."""

    def __init__(self, link: ClientLink) -> None:
        self.link = link

    def admit(self, admit: Admit) -> Lease:
        """A lease for attempt 0 (waits its turn; a typed LMError when it may not be sent)."""
        return self.link.call(admit)

    def failed(self, report: Report) -> Lease | Done:
        """A failed attempt's outcome: the next attempt's lease, or the request's typed error."""
        return self.link.call(report)

    def succeeded(self, report: Report) -> None:
        """A success: the actor books it; nobody waits for its answer."""
        self.link.cast(report)

    def release(self, lease: int, run: str | None, reason: str = "Aborted") -> None:
        """A lease that ended without an outcome (Ctrl-C mid-attempt): its place goes back at once."""
        self.link.cast(Release(lease, run, reason))

    def cache_hit(self, run: str | None) -> None:
        self.link.cast(CacheHit(run))

    def flush(self) -> None:
        """Hand the actor what this channel still holds (nothing, here)."""

    def close(self) -> None:
        self.flush()


class Pipeline:
    """One client's requests from one process: its transport (HTTP pool), the process's response cache
    and call history, and its lease channel, direct or coalesced (chosen here, once). ``history`` None: no
    ``remember`` layer (a client that is not an LM, e.g. a ColBERT search: not in ``lm.history`` or
    ``dspex.track_usage()``; its client actor still counts each request).

    ``asend`` is the same pipeline on the process's event loop (``loop``): the cache and history layers
    as they are, the lease steps awaited on an :class:`~dspex.clients.async_channel.AsyncChannel`, each
    attempt on an :class:`~dspex.clients.async_transport.AsyncTransport` (both made on first use). A
    request streamed to a sink, or a client whose transport is not HTTP (a ``dspex.BaseLM``'s ``forward``),
    goes through ``send`` on a thread."""

    def __init__(self, transport: Transport, cache: ResponseCache, link: ClientLink, history: deque | None, *,
                 direct: bool, loop: EventLoop | None = None, ahead: float = 0.0) -> None:
        self.transport = transport
        self.link = link
        self.loop = loop
        self.ahead = ahead  # seconds of need whose leases are held ahead (a worker on another host; ahead.py)
        self.direct = direct  # the client actor runs in this process (the local base)
        self.channel = DirectChannel(link) if direct else CoalescedChannel(link, ahead)
        self.hold = Hold()  # one per client and process: a 429's pause holds both engines' attempts
        self._cached = Cached(Leased(Streamed(transport), self.channel, self.hold), cache, self.channel)
        self._remember = Remember(self._cached, history) if history is not None else None
        self._send: Send = self._remember if self._remember is not None else self._cached
        self._achannel: AsyncChannel | None = None
        self._atransport: AsyncTransport | None = None
        self.hedging = Hedging()  # when this process's attempts on the loop get a twin

    @property
    def runs_async(self) -> bool:
        """Its requests can run as tasks on the event loop (an HTTP client with a loop to run on)."""
        return self.loop is not None and isinstance(self.transport, Transport)

    def send(self, request: Request) -> Completion:
        """The completion of ``request``; raises a typed :class:`~dspex.errors.LMError`."""
        return self._send(request)

    async def asend(self, request: Request) -> Completion:
        """``send`` for async code: on the process's event loop (hopping onto it from any other loop)."""
        if not self.runs_async or request.stream is not None:
            return await asyncio.to_thread(self._send, request)
        assert self.loop is not None
        if self.loop.running_here():
            return await self._asend(request)
        return await asyncio.wrap_future(self.loop.submit(self._asend(request)))

    async def _asend(self, request: Request) -> Completion:
        key, comp = self._cached.lookup(request)
        if comp is None:
            if self._achannel is None:
                self._achannel = AsyncChannel(self.link, self.ahead, inline=self.direct)
                self._atransport = AsyncTransport(self.transport)
            comp = self._cached.store(key, await arun_steps(lease_steps(request, self._achannel, self.hold),
                                                            self._aperform))
        return self._remember.record(request, comp) if self._remember is not None else comp

    async def _aperform(self, step: Step) -> Any:
        assert self._achannel is not None and self._atransport is not None
        match step:
            case ("admit", admit):
                return await self._achannel.admit(admit)
            case ("hold",):
                return await self.hold.await_()
            case ("attempt", request, lease):
                return await self._attempt(request, lease)
            case ("failed", report):
                return await self._achannel.failed(report)
        raise TypeError(f"dspex bug: unknown lease step {step!r}")

    async def _attempt(self, request: Request, lease: Lease) -> tuple[AttemptResult, Lease]:
        """One attempt on the loop, hedged when it is still unanswered after the hedging delay (``hedging``):
        the outcome that came first, and the lease it came under."""
        assert self._atransport is not None
        hedging, cfg = self.hedging, request.cfg
        if cfg.hedge is None:
            outcome = await self._atransport.attempt(request.messages, request.sampling)
            hedging.observe(outcome.ok, outcome.latency_s)
            return outcome, lease
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = asyncio.ensure_future(self._atransport.attempt(request.messages, request.sampling))
        try:
            looks = 0  # times it looked again, its delay unknown
            while not first.done():
                after = hedging.delay(cfg.hedge, cfg.timeout)  # (it changes as latencies are learned)
                if after is None:
                    looks += 1
                    after = looks * hedging.look_again(cfg.timeout)
                    if after >= cfg.timeout:
                        break
                elif loop.time() >= start + after:
                    if hedging.take():
                        return await self._hedge(request, lease, first)
                    after = loop.time() - start + hedging.look_again(cfg.timeout)  # the share is used up now
                    if after >= cfg.timeout:
                        break
                await asyncio.wait((first,), timeout=max(0.0, start + after - loop.time()))
            outcome = await first
        except BaseException:  # cancelled (the example's deadline, Ctrl-C): its HTTP request goes too
            first.cancel()
            raise
        hedging.observe(outcome.ok, outcome.latency_s)
        return outcome, lease

    async def _hedge(self, request: Request, lease: Lease,
                     first: asyncio.Future[AttemptResult]) -> tuple[AttemptResult, Lease]:
        """``first`` is late: twins go, each on a lease of its own, the next one a hedging delay after the
        last while none has succeeded, or at once when one failed (at most ``MAX_TWINS`` out at once and
        twice that in all, while the share allows, and none once no lease may be had: budget, breaker); the
        first success wins (the first to end when all failed: a hung first attempt timing out does not
        cancel the twin about to answer, and a twin's quick 500 does not leave the hung one to its timeout),
        the other attempts are cancelled and their leases released (booked at their maximum: the provider
        may bill them). A lease that comes after a success goes back unbooked."""
        assert self._achannel is not None and self._atransport is not None
        channel, hedging, cfg = self._achannel, self.hedging, request.cfg
        loop = asyncio.get_running_loop()
        runs: dict[asyncio.Future[AttemptResult], Lease] = {first: lease}
        asked: asyncio.Future[Lease] | None = asyncio.ensure_future(channel.admit(request.admit()))
        last, more = loop.time(), True  # when the newest twin started; whether another may be asked for
        replaced = 0  # failed runs a twin was asked for at once
        try:
            while not _settled(runs):
                timeout = None
                failed = sum(run.done() for run in runs)  # (ended, none succeeded: failures)
                if asked is None and more and len(runs) - failed <= MAX_TWINS and len(runs) <= 2 * MAX_TWINS:
                    after = hedging.delay(cfg.hedge, cfg.timeout)
                    if after is None:
                        more = False
                    elif last + after > loop.time() and failed <= replaced:
                        timeout = last + after - loop.time()
                    elif hedging.take():
                        replaced = failed  # (a failed run's place is taken at once, not a delay later)
                        asked = asyncio.ensure_future(channel.admit(request.admit()))
                    else:  # the share of twins is used up for now: look again later
                        timeout = hedging.look_again(cfg.timeout)
                waiting = {run for run in runs if not run.done()} | ({asked} if asked is not None else set())
                await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if asked is not None and asked.done() and not _settled(runs):
                    if asked.exception() is None:
                        twin = asyncio.ensure_future(self._atransport.attempt(request.messages, request.sampling))
                        runs[twin], last = asked.result(), loop.time()
                    else:
                        more = False
                    asked = None
            answered = [run for run in runs if run.done()]
            won = next((run for run in answered if run.result().ok), answered[0])
            for run, held in runs.items():
                if run is not won:
                    run.cancel()
                    channel.release(held.id, request.run, reason=HEDGED)
            outcome = won.result()
            hedging.observe(outcome.ok, outcome.latency_s)
            return outcome, runs[won]
        except BaseException:  # cancelled: every attempt goes; the twins' leases here, the first's by lease_steps
            for run, held in runs.items():
                run.cancel()
                if run is not first:
                    channel.release(held.id, request.run, reason=HEDGED)
            raise
        finally:
            if asked is not None and not asked.done():
                asked.cancel()  # (a lease arriving as it is cancelled goes back: AsyncChannel.admit)
            elif asked is not None:
                _unused(channel, asked)

    def flush(self) -> None:
        """Hand the client actor what this pipeline still holds (batched success reports)."""
        self.channel.flush()
        if self._achannel is not None:
            self._achannel.flush()

    def _remote_channels(self) -> list[ReportingChannel]:
        """Its lease channels to a client actor in another process (a direct channel batches nothing and
        holds nothing ahead: it sends each report at once)."""
        return [c for c in (self.channel, self._achannel) if isinstance(c, ReportingChannel)]

    def take_reports(self) -> list[tuple[Any, list]]:
        """The success reports this pipeline has not sent yet, as (client actor address, reports): for a
        caller that delivers them itself."""
        return [found for channel in self._remote_channels() if (found := channel.take_reports())]

    def put_back_reports(self, address: Any, reports: list) -> bool:
        """Put back reports taken for the client actor at ``address`` (True: this pipeline's)."""
        for channel in self._remote_channels():
            ref = channel.link.known()
            if ref is not None and ref.address == address:
                channel.put_back(reports)
                return True
        return False

    def give_back(self) -> None:
        """Give back the leases this pipeline holds ahead of need."""
        for channel in self._remote_channels():
            channel.give_back_all()

    async def aclose(self) -> None:
        """Close what lives on the event loop (its HTTP session), on the loop."""
        if self._atransport is not None:
            await self._atransport.aclose()

    def close(self) -> None:
        self.channel.close()
        if self._achannel is not None:
            self._achannel.close()
        self.transport.close()


def _settled(runs: dict) -> bool:
    """A hedged attempt's runs are settled: one succeeded, or all ended."""
    ended = [run for run in runs if run.done()]
    return len(ended) == len(runs) or any(run.result().ok for run in ended)


def _unused(channel: AsyncChannel, asked: asyncio.Future) -> None:
    """A twin's lease that came after all: its attempt was not needed, the lease goes back unbooked."""
    if not asked.cancelled() and asked.exception() is None:
        channel.give_back([asked.result().id])


def history_entry(request: Request, comp: Completion) -> dict:
    """One ``lm.history`` entry, with DSPy's keys (``response`` is the answer's text: dspex keeps no provider
    response object; never a key)."""
    usage = {"prompt_tokens": comp.usage.prompt_tokens, "completion_tokens": comp.usage.completion_tokens,
             "total_tokens": comp.usage.total_tokens}
    given = request.given
    return {"prompt": given if isinstance(given, str) else None, "messages": request.messages,
            "kwargs": dict(request.overrides), "response": comp.text, "outputs": [comp.output()], "usage": usage,
            "cost": comp.cost, "timestamp": datetime.datetime.now().isoformat(), "uuid": str(uuid.uuid4()),
            "model": request.cfg.qualified, "response_model": comp.model, "model_type": "chat",
            "cached": comp.cached, "latency_s": comp.latency_s}


__all__ = ["Pipeline", "Request", "Remember", "Cached", "Leased", "Streamed", "ClientLink", "DirectChannel",
           "history_entry", "lease_steps", "CALL_TIMEOUT"]
