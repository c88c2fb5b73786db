"""What tracing costs: CPU per example of an evaluation with dspex.telemetry off and on (five spans an
example: row, Predict, format, chat, parse; the OpenTelemetry SDK's batch processor into its in-memory
exporter, so no network is timed). The provider simulator runs in the same process and its CPU is in both
columns. Interleaved, the first round a warm-up, medians. DSPy has no tracer of its own to compare with (its
users add OpenInference's or MLflow's)."""

from __future__ import annotations

import resource
import statistics
import time

N, ROUNDS = 400, 5
KEY = "sk-bench-telemetry-0000"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run() -> str:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import dspex
    import dspex.telemetry
    from dspex.testing import ProviderServer

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=100_000))
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    wall: dict[str, list[float]] = {"off": [], "on": []}
    with ProviderServer(answer="[[ ## answer ## ]]\nX\n\n[[ ## completed ## ]]", api_key=KEY) as sim, \
            dspex.runtime("local", log_level="error"):
        lm = dspex.LM("openai/m", api_key=KEY, base_url=sim.base_url(), cache=False, rpm=None)
        program = dspex.Predict("question -> answer", lm=lm)
        for round_ in range(ROUNDS):
            for mode in ("off", "on"):
                if mode == "on":
                    dspex.telemetry.instrument(tracer_provider=provider)
                devset = [dspex.Example(question=f"q{round_}-{mode}-{i}", answer="X").with_inputs("question")
                          for i in range(N)]
                c0, w0 = _cpu(), time.monotonic()
                dspex.Evaluate(devset, lambda e, p, t=None: 1, max_concurrency=16, progress=False).run(program)
                c1, w1 = _cpu(), time.monotonic()
                provider.force_flush()
                dspex.telemetry.uninstrument()
                if round_:
                    cpu[mode].append((c1 - c0) / N * 1000)
                    wall[mode].append(w1 - w0)
    spans = len(exporter.get_finished_spans()) // ROUNDS // N
    off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    return "\n".join([
        f"{N} examples, Predict on the simulator (same process), 16 threads; {spans} spans an example when on.",
        "",
        "| tracing | CPU ms / example | wall s | spans / s |",
        "|---|---|---|---|",
        f"| off | {off:.2f} | {statistics.median(wall['off']):.2f} | - |",
        f"| on (BatchSpanProcessor) | {on:.2f} | {statistics.median(wall['on']):.2f} | "
        f"{spans * N / statistics.median(wall['on']):.0f} |",
        "",
        f"Cost: {on - off:.2f} ms of CPU an example, {(on - off) / max(1, spans) * 1000:.0f} µs a span.",
    ])


if __name__ == "__main__":
    print(run())
