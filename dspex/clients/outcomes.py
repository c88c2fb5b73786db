"""What an attempt's outcome (``transport.AttemptResult``, sent back in a ``Report``) means to the client
actor: what its rate policy learns, a 429's pause, a retry's delay, the typed error a request fails with.

Decisions only (the actor gathers the facts and executes them: pauses the limiter, parks the retry,
fails the request); the rate policy (``AdaptiveRate``) is the one thing changed here, by what it learns.
"""

from __future__ import annotations

from typing import Callable

from supervision.resilience import exponential_backoff, health_backoff
from supervision.resilience.adaptive import AdaptiveRate, RateHints, ThrottleShare

from ..errors import ConnectionFailed, LMError, LMTimeout, MalformedResponse, RateLimited, provider_error
from .config import LMConfig
from .transport import AttemptResult


def learn(rate: AdaptiveRate, outcome: AttemptResult, sent_at: float) -> bool:
    """The rate policy learns from every answer: advertised limits, 429s (decrease), successes (increase).
    True: its limits changed."""
    changed = rate.answered(outcome.hints)
    if outcome.kind == "status" and outcome.status == 429:
        changed = rate.throttled_by_server(sent_at, outcome.hints) or changed
    elif outcome.ok:
        changed = rate.succeeded() or changed
    return changed


def remaining_pause(hints: RateHints | None) -> float | None:
    """A server that says no request is left right now gets none until its next one is due: how long (None:
    no pause)."""
    adv = hints.requests if hints is not None else None
    if adv is not None and adv.remaining is not None and adv.remaining < 1 and adv.limit:
        due = 60.0 / adv.limit
        return min(due, adv.reset_s) if adv.reset_s is not None else due
    return None


def backoff(attempt: int, cfg: LMConfig) -> float:
    return exponential_backoff(attempt, cfg.backoff_base, cfg.backoff_cap, jitter=1.0)


def throttle_pause(outcome: AttemptResult, attempt: int, cfg: LMConfig, share: ThrottleShare) -> float | None:
    """A 429 that is congestion (``share``: it names a limit, or 429s are a sustained share of the recent
    answers) pauses every request of the client: its Retry-After, else the backoff. None: not a 429, or a
    scattered one, after which only its own request waits (``retry_delay``), as in the providers' SDKs."""
    if outcome.kind == "status" and outcome.status == 429 and share.congestion(outcome.hints):
        return outcome.retry_after if outcome.retry_after is not None else backoff(attempt, cfg)
    return None


def retry_delay(outcome: AttemptResult, attempt: int, retries: int | None, cfg: LMConfig,
                pressure: Callable[[], float]) -> float | None:
    """Seconds until a failed attempt goes again, or None: it fails for good (not retryable, or its retries —
    the handle's, else the client's, at most the provider's — are used up). ``pressure``: the breaker's."""
    retries = cfg.retries if retries is None else retries
    cap = retries if outcome.max_retries is None else min(retries, outcome.max_retries)
    if not (outcome.retryable and attempt < cap):
        return None
    return (outcome.retry_after if outcome.retry_after is not None
            else backoff(attempt, cfg) if outcome.status == 429
            else health_backoff(attempt, cfg.backoff_base, cfg.backoff_cap,
                                pressure()))  # scattered errors: soon; degraded: the lot


def attempt_error(outcome: AttemptResult, attempts: int, cfg: LMConfig) -> LMError:
    """The typed error of a request whose last attempt had ``outcome``, after ``attempts`` attempts."""
    model = cfg.qualified
    if outcome.kind == "timeout":
        return LMTimeout(f"no answer within timeout={cfg.timeout:g}s", model, attempts)
    if outcome.kind == "connection":
        return ConnectionFailed(f"connection failed or dropped ({outcome.detail[:200]})", model, attempts)
    if outcome.kind == "malformed":
        return MalformedResponse("the response body is not valid", model, attempts, body=outcome.detail)
    if outcome.kind == "empty":
        return MalformedResponse("the model returned an empty completion (check the prompt format, stop "
                                 "sequences and max_tokens)", model, attempts, body=outcome.detail)
    if outcome.status == 429:
        return RateLimited("the provider kept answering 429 Too Many Requests", model, attempts,
                           retry_after=outcome.retry_after)
    return provider_error(outcome.status, outcome.detail, model, attempts)


__all__ = ["learn", "remaining_pause", "backoff", "throttle_pause", "retry_delay", "attempt_error"]
