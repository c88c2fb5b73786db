"""``python -m benchmarks [name ...]``: run the benchmarks (all, or the named sections) in one run and
write their tables into benchmarks/README.md."""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path

from benchmarks import (bench_adapters, bench_cluster, bench_processes, bench_bad_day, bench_clients, bench_defaults, bench_evaluate,
                        bench_instructions, bench_optimizers, bench_quality, bench_rag, bench_row_memory, bench_scale,
                        bench_supervision, bench_telemetry,
                        bench_two_rules,
                        dspy_conformance, dspy_env)

README = Path(__file__).with_name("README.md")


def replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    return text + "\n" + block + "\n"


def main() -> None:
    stamp = f"_Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, Python {platform.python_version()}._"
    dspy_env.ensure()
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    benches = (("supervision", bench_supervision.run), ("adapters", bench_adapters.run),
               ("clients", bench_clients.run), ("evaluate", bench_evaluate.run), ("bad_day", bench_bad_day.run),
               ("defaults", bench_defaults.run), ("processes", bench_processes.run),
               ("optimizers", bench_optimizers.run), ("instructions", bench_instructions.run),
               ("two_rules", bench_two_rules.run),
               ("quality", bench_quality.run), ("quality_instructions", lambda: bench_quality.run("instructions")),
               ("quality_optimizers", lambda: bench_quality.run("optimizers")), ("rag", bench_rag.run),
               ("telemetry", bench_telemetry.run), ("row_memory", bench_row_memory.run), ("scale", bench_scale.run),
               ("cluster", bench_cluster.run),
               # DSPy's own tests on dspex: needs a DSPy source checkout ($DSPY_CHECKOUT); without one the
               # section keeps its last figures
               ("conformance", lambda: dspy_conformance.run() if os.environ.get("DSPY_CHECKOUT") else None))
    wanted = set(sys.argv[1:]) or {name for name, _ in benches}
    for name, bench in benches:
        if name not in wanted:
            continue
        table = bench()
        if table is None:
            print(f"{name}: not run (see benchmarks/__main__.py)", file=sys.stderr)
            continue
        print(table)
        text = replace_section(text, name, f"{stamp}\n\n{table}")
    README.write_text(text)
    print(f"wrote {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
