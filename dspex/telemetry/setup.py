"""Turning tracing on and off in a process: where spans go, and what they may hold.

Tracing is a property of the process (as OpenTelemetry's global tracer provider is): one
:class:`SpanCallback` installed with :func:`dspex.utils.callback.add_instrument` sees every call, in every
thread. :func:`instrument` installs it, :func:`uninstrument` removes it; calling ``instrument`` again
replaces the first (its settings), never doubles the spans.

Where spans go: the tracer provider given; else the global one (``opentelemetry.trace.set_tracer_provider``,
as MLflow, Phoenix, Langfuse, LangSmith and Weave set it up); else, when the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, a provider dspex builds
that batches spans to it over OTLP/HTTP (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` with the gRPC exporter
installed), shut down (flushed) by :func:`uninstrument` or at exit. With none of these, spans are
OpenTelemetry's no-op until a global provider is set.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..utils.callback import add_instrument, remove_instrument
from ..utils.optional import need
from .spans import SpanCallback

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


@dataclass
class Installed:
    """The tracing this process does: its callback, where its spans go, and how it was set up."""

    callback: SpanCallback
    provider: Any  # the tracer provider the spans go to
    owned: bool  # dspex built the provider (uninstrument shuts it down)
    capture_messages: bool
    endpoint: str | None  # the OTLP traces URL, when known: worker processes without their own export there

    def flush(self, timeout_s: float) -> None:
        force_flush = getattr(self.provider, "force_flush", None)
        if callable(force_flush):
            force_flush(int(timeout_s * 1000))


_installed: Installed | None = None
_lock = threading.Lock()


def current() -> Installed | None:
    """This process's tracing, or None when it is off."""
    return _installed


def _sdk() -> Any:
    need("opentelemetry.sdk.trace", "otel", "dspex.telemetry (the OpenTelemetry SDK)")
    from opentelemetry import trace

    return trace


def _env_endpoint() -> str | None:
    """The OTLP traces URL the environment names (the per-signal variable is a full URL; the general one
    is a base the exporter appends ``/v1/traces`` to)."""
    if os.environ.get(ENDPOINT_VARIABLES[0]):
        return os.environ[ENDPOINT_VARIABLES[0]]
    base = os.environ.get(ENDPOINT_VARIABLES[1])
    return base.rstrip("/") + "/v1/traces" if base else None


def _exporter(endpoint: str | None) -> Any:
    """An OTLP span exporter: to ``endpoint``, or (None) where the environment says; headers, timeouts and
    certificates from the standard environment variables either way."""
    protocol = next((os.environ[v] for v in PROTOCOL_VARIABLES if os.environ.get(v)), "http/protobuf")
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the gRPC exporter: pip install "
                              "opentelemetry-exporter-otlp-proto-grpc (or set it to http/protobuf)") from None
        return OTLPSpanExporter() if endpoint is None else OTLPSpanExporter(endpoint=endpoint)
    if protocol != "http/protobuf":
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use http/protobuf or grpc")
    exporter = need("opentelemetry.exporter.otlp.proto.http.trace_exporter", "otel", "exporting spans over OTLP")
    return exporter.OTLPSpanExporter() if endpoint is None else exporter.OTLPSpanExporter(endpoint=endpoint)


def _otlp_provider(endpoint: str | None) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "dspex"}
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(BatchSpanProcessor(_exporter(endpoint)))
    return provider


def _install(provider: Any, owned: bool, capture_messages: bool, endpoint: str | None) -> None:
    """Replace this process's tracing (the lock held)."""
    global _installed
    if _installed is not None:
        _remove(_installed)
    callback = SpanCallback(provider.get_tracer("dspex", _version()), capture_messages)
    _installed = Installed(callback, provider, owned, capture_messages, endpoint)
    add_instrument(callback)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dspex")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _remove(installed: Installed) -> None:
    remove_instrument(installed.callback)
    if installed.owned:
        installed.provider.shutdown()  # exports what is queued


def instrument(tracer_provider: Any = None, capture_messages: bool = False) -> None:
    """Trace every dspex call in this process as OpenTelemetry spans (see the module's doc for where they
    go). ``capture_messages=True`` adds the messages sent and answers received, module inputs and outputs
    (bounded, keys masked); off by default, because prompts hold users' data."""
    trace = _sdk()
    if not isinstance(capture_messages, bool):
        raise ConfigError(f"capture_messages must be True or False, got {capture_messages!r}")
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        raise ConfigError(f"tracer_provider must be an OpenTelemetry TracerProvider, got {type(tracer_provider).__name__}")
    with _lock:
        endpoint, owned = _env_endpoint(), False
        provider = tracer_provider or trace.get_tracer_provider()
        if tracer_provider is None and isinstance(provider, trace.ProxyTracerProvider) and endpoint:
            provider, owned = _otlp_provider(None), True  # no global SDK provider: ours, to the environment's
        _install(provider, owned, capture_messages, endpoint)


def uninstrument() -> None:
    """Stop tracing dspex's calls in this process (spans dspex's own provider holds are exported first)."""
    global _installed
    with _lock:
        if _installed is not None:
            _remove(_installed)
            _installed = None


def instrument_from_environment() -> None:
    """``DSPEX_OTEL=1``: :func:`instrument` as ``import dspex`` runs (``DSPEX_OTEL_CAPTURE_MESSAGES=1`` to
    capture messages); spans to the standard ``OTEL_EXPORTER_OTLP_*`` endpoint or the global provider."""
    capture = os.environ.get("DSPEX_OTEL_CAPTURE_MESSAGES", "0")
    if capture not in ("0", "1"):
        raise ConfigError(f"DSPEX_OTEL_CAPTURE_MESSAGES must be 0 or 1, got {capture!r}")
    instrument(capture_messages=capture == "1")


def instrument_for_worker(capture_messages: bool, endpoint: str | None) -> None:
    """A worker process given traced work: trace here too, unless it already does. Spans go to this
    process's own OTLP endpoint, else to ``endpoint`` (the sender's); with neither they have nowhere to
    go and tracing stays off."""
    if _installed is not None:
        return
    _sdk()
    with _lock:
        if _installed is not None:
            return
        own = _env_endpoint()
        if own is None and endpoint is None:
            return
        _install(_otlp_provider(None if own else endpoint), True, capture_messages, own or endpoint)


__all__ = ["instrument", "uninstrument", "instrument_from_environment", "instrument_for_worker", "current",
           "Installed", "ENDPOINT_VARIABLES"]
