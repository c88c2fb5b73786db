"""What an evaluation holds per row: Python memory (tracemalloc) kept after a second evaluation of N examples,
once the bounded histories (``max_history_size``, ``max_trace_size``, the runtime's call history: 10,000
entries each) are full from a first one, so the figure is what grows with the number of examples. The
simulator runs in another process (its request log is not ours). ``keep_rows=True`` (the default) against
``keep_rows=False`` (score, error and example a row; the journal has the predictions)."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc

N = 11_000
KEY = "sk-bench-rows-0000"


def _held_per_row(url: str, keep: bool) -> float:
    import dspex

    with dspex.runtime("local", log_level="error"):
        lm = dspex.LM("openai/m", api_key=KEY, base_url=url, cache=False, rpm=None)
        program = dspex.Predict("question -> answer", lm=lm)

        def devset(tag: str) -> list:
            return [dspex.Example(question=f"q {tag} {i} about things", answer="X").with_inputs("question")
                    for i in range(N)]

        first, second = devset("a"), devset("b")
        tracemalloc.start()
        try:
            kept = [dspex.Evaluate(first, lambda e, p, t=None: 1, max_concurrency=16, progress=False,
                                   keep_rows=keep).run(program)]
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            kept.append(dspex.Evaluate(second, lambda e, p, t=None: 1, max_concurrency=16, progress=False,
                                       keep_rows=keep).run(program))
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - before) / N
        finally:
            tracemalloc.stop()


def run() -> str:
    server = subprocess.Popen([sys.executable, "-c", (
        "import sys\nfrom dspex.testing import ProviderServer\n"
        f"with ProviderServer(answer='[[ ## answer ## ]]\\nX\\n\\n[[ ## completed ## ]]', api_key='{KEY}') as s:\n"
        "    print(s.base_url(), flush=True)\n    sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        url = server.stdout.readline().strip()
        keep, compact = _held_per_row(url, True), _held_per_row(url, False)
    finally:
        server.stdin.close()
        server.wait(10)
    return "\n".join([
        f"{N:,} examples of Predict after {N:,} more (the bounded histories full): memory kept per row.",
        "",
        "| rows | bytes a row | 100,000 examples |",
        "|---|---|---|",
        f"| keep_rows=True (default: each row's prediction, its trace and messages) | {keep:,.0f} | "
        f"{keep * 100_000 / 2**20:,.0f} MB |",
        f"| keep_rows=False (score, error, example; the journal has the rest) | {compact:,.0f} | "
        f"{compact * 100_000 / 2**20:,.0f} MB |",
    ])


if __name__ == "__main__":
    print(run())
