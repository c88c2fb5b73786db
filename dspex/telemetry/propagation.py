"""Traces across processes and hosts: W3C trace context in the actor messages that hand out work.

:func:`carry` is called where work leaves this process (Evaluate's worker processes and hosts): it gives
a small dict of strings, empty when tracing is off, so a run without it pays nothing and imports nothing.
The other side runs each piece of work inside :func:`resumed`: the first carrier it sees turns tracing on
in that process too (the same ``capture_messages``; spans exported over OTLP to that process's own
``OTEL_EXPORTER_OTLP_*`` endpoint, else the one the sending process used), and the work's spans become
children of the span that sent it. Nothing secret is carried: OTLP headers (an API key of a tracing
service) stay in each process's environment.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, TypeVar

from .setup import current, instrument_for_worker

T = TypeVar("T")

_CAPTURE = "dspex-capture-messages"
_ENDPOINT = "dspex-otlp-endpoint"


def carry() -> dict[str, str]:
    """The current trace context to send with work (``traceparent`` / ``tracestate``), and how the other
    side should trace; ``{}`` when this process is not instrumented."""
    installed = current()
    if installed is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {_CAPTURE: "1" if installed.capture_messages else "0"}
    if installed.endpoint:
        carrier[_ENDPOINT] = installed.endpoint
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


@contextlib.contextmanager
def resumed(carrier: dict[str, str] | None) -> Iterator[None]:
    """Run the block as a part of the trace ``carrier`` came from (a no-op for an empty carrier)."""
    if not carrier:
        yield
        return
    instrument_for_worker(capture_messages=carrier.get(_CAPTURE) == "1", endpoint=carrier.get(_ENDPOINT))
    from opentelemetry import context as otel_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def call_resumed(carrier: dict[str, str] | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` inside :func:`resumed` (for a thread pool, whose threads do not copy contexts)."""
    with resumed(carrier):
        return fn(*args)


def flush(timeout_s: float = 5.0) -> None:
    """Export the spans this process has finished and not yet sent (a worker before it reports or stops)."""
    installed = current()
    if installed is not None:
        installed.flush(timeout_s)


__all__ = ["carry", "resumed", "call_resumed", "flush"]
