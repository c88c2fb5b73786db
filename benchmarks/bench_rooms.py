"""How many rooms (modules) three walks through dspex enter, and how often they cross between them.

    python -m benchmarks.bench_rooms [--tree PATH]

The walks (the house issue's): one ``Predict`` call; an ``Evaluate`` of 20 examples on worker processes
(the caller's process only: the workers run the Predict walk); a small ``MIPROv2`` compile. Each runs
against the provider simulator on 127.0.0.1 after a warm-up, with ``sys.setprofile`` / ``threading.setprofile``
recording every Python call in this process: a room is a module of ``dspex`` or ``supervision`` that a call
entered; a crossing is a call from one such module into another. ``--tree`` runs the same walks on another
checkout of the project (e.g. an older commit, ``git worktree add /tmp/old <commit>``) to compare.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

WALKS = ("predict", "evaluate", "mipro")


def _module_of(filename: str, roots: tuple[str, ...]) -> str | None:
    for root in roots:
        if filename.startswith(root):
            rel = Path(filename[len(root):].lstrip("/")).with_suffix("")
            parts = rel.parts
            if parts and parts[0] in ("dspex", "supervision") and "testing" not in parts:
                return ".".join(parts).removesuffix(".__init__")
    return None


def measure(walk: str) -> dict:
    """Run one walk in this process and count the rooms it entered (called in a fresh interpreter)."""
    import dspex
    from dspex.testing import ProviderServer

    root = str(Path(dspex.__file__).resolve().parent.parent)
    roots = (root,)
    rooms: set[str] = set()
    crossings: dict[tuple[str, str], int] = {}
    lock = threading.Lock()

    def profile(frame, event, arg):  # noqa: ANN001 - the profiler's protocol
        if event != "call":
            return
        callee = _module_of(frame.f_code.co_filename, roots)
        if callee is None:
            return
        caller = _module_of(frame.f_back.f_code.co_filename, roots) if frame.f_back is not None else None
        with lock:
            rooms.add(callee)
            if caller is not None and caller != callee:
                crossings[(caller, callee)] = crossings.get((caller, callee), 0) + 1

    def answer(req):  # a Chat-adapter answer for whatever fields the prompt asks for
        text = req.prompt_text
        if "proposed_instruction" in text:
            return "[[ ## proposed_instruction ## ]]\nAnswer briefly.\n\n[[ ## completed ## ]]"
        return "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"

    os.environ["OPENAI_API_KEY"] = "sk-rooms-0123456789"  # worker processes read their key from the environment
    with ProviderServer(answer=answer, api_key="sk-rooms-0123456789") as server:
        base = "multiproc" if walk == "evaluate" else "local"
        with dspex.runtime(base, log_level=None):
            lm = dspex.LM("openai/m", api_key="sk-rooms-0123456789", base_url=server.base_url(), cache=False)
            dspex.configure(lm=lm)
            qa = dspex.Predict("question -> answer")
            data = [dspex.Example(question=f"What is {i} + 2?", answer="4").with_inputs("question") for i in range(20)]

            def run() -> Any:
                if walk == "predict":
                    return qa(question="What is 2 + 2?")
                if walk == "evaluate":
                    result = dspex.Evaluate(devset=data, metric=lambda e, p, trace=None: e.answer == p.answer,
                                            workers=2, progress=False)(qa)
                    failed = [r.error for r in result.rows if r.error is not None]
                    if failed:  # a walk that fails measures the failure's path, not the evaluation's
                        raise RuntimeError(f"the evaluate walk failed: {failed[0]!r}")
                    return result
                return dspex.MIPROv2(metric=lambda e, p, t=None: e.answer == p.answer, auto=None, num_candidates=2,
                                  num_trials=2, max_bootstrapped_demos=1, max_labeled_demos=1,
                                  minibatch=False).compile(qa, trainset=data[:8], valset=data[8:16])

            run()  # warm-up: first-use imports and actor starts are not the walk
            threading.setprofile(profile)
            sys.setprofile(profile)
            try:
                run()
            finally:
                sys.setprofile(None)
                threading.setprofile(None)
    return {"walk": walk, "rooms": len(rooms), "crossings": len(crossings),
            "calls_across": sum(crossings.values()), "modules": sorted(rooms)}


def run_tree(tree: Path, walk: str) -> dict:
    """One walk in a fresh interpreter that imports dspex from ``tree``."""
    import json

    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--measure", walk], env=env, capture_output=True, text=True,
                         timeout=600, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"the {walk} walk failed in {tree}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(old: str | None = None) -> str:
    here = Path(__file__).resolve().parent.parent
    trees = [("now", here)] + ([("before", Path(old))] if old else [])
    lines = ["| walk | tree | rooms (modules entered) | module pairs crossed | calls across modules |",
             "|---|---|---|---|---|"]
    for walk in WALKS:
        for label, tree in trees:
            r = run_tree(tree, walk)
            lines.append(f"| {walk} | {label} | {r['rooms']} | {r['crossings']} | {r['calls_across']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--measure" in args:
        import json

        print(json.dumps(measure(args[args.index("--measure") + 1])))
    else:
        print(run(args[args.index("--tree") + 1] if "--tree" in args else None))
