"""Traces where users already look: dspex's calls as OpenTelemetry spans (the ``dspex[otel]`` extra).

::

    import dspex.telemetry
    dspex.telemetry.instrument()                        # the global tracer provider, or OTLP from the environment
    dspex.telemetry.instrument(tracer_provider=my_tp, capture_messages=True)
    dspex.telemetry.uninstrument()

or, with no code, ``DSPEX_OTEL=1`` and the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` in the environment.
Any tool that takes OpenTelemetry reads them: Arize Phoenix, MLflow, Langfuse, LangSmith, Weave, Jaeger.

A trace is the tree of what ran: ``Evaluate`` → ``evaluate row N`` → ``MyProgram.forward`` →
``Predict.forward`` → ``ChatAdapter.format`` / ``chat <model>`` / ``ChatAdapter.parse`` (and tool calls,
``<Optimizer>.compile`` → ``compile step <phase>`` → its evaluations). It is built on the callbacks
(:mod:`dspex.utils.callback`), parented across the threads dspex starts, and carried to Evaluate's worker
processes and hosts as W3C trace context in the messages that hand them work (:mod:`.propagation`).
LM spans follow the GenAI semantic conventions; spans never hold a key (see :mod:`.spans`).
"""

from .propagation import carry, flush, resumed
from .setup import instrument, instrument_from_environment, uninstrument
from .setup import current as _current


def is_instrumented() -> bool:
    """Whether this process traces dspex's calls."""
    return _current() is not None


__all__ = ["instrument", "uninstrument", "is_instrumented", "instrument_from_environment", "carry", "resumed",
           "flush"]
