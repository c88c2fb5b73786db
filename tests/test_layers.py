"""The layout shows the architecture: no import cycles, and arrows only downward (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# dspex's layers, lowest first; a module may import only its own layer or lower ones
# (a dotted entry places a subpackage's module on its own: DSPy's import paths put modules of different
# layers under one name, e.g. ``dspex.utils.callback`` below the adapters and ``dspex.utils.dummies`` on top)
LAYERS = [
    {"errors", "scrub", "jsonl", "journal", "logs", "primitives", "signature", "signatures", "providers", "config", "telemetry",
     "events", "utils.callback", "utils.callback_context", "utils.optional", "utils.exceptions", "utils.asyncify", "utils.syncify", "utils.parallelizer", "utils.collector"},
    {"adapters", "experimental"},
    {"clients"},
    {"local"},
    {"runtime", "dashboard"},  # the runtime serves its own dashboard (rt.dashboard())
    {"programs"},
    {"evaluate", "metrics"},
    {"teleprompt"},
    # DSPy's paths that re-export from several layers (``dspex.primitives.module.Module``, ``dspex.predict``,
    # ``dspex.dsp.utils.settings``, ``dspex.utils.dummies``)
    {"testing", "demo", "datasets", "worker_host", "cli", "__main__", "__init__", "utils", "predict", "dsp", "primitives.module",
     "primitives.base_module", "retrievers", "streaming"},
]


def modules() -> dict[str, Path]:
    found = {}
    for pkg in ("supervision", "dspex"):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    target = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                targets = subs if subs and len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    """The layer of the longest entry naming the module or a package above it (``dspex`` itself: the top)."""
    parts = module.split(".")[1:] or ["__init__"]
    for n in range(len(parts), 0, -1):
        found = [i for i, names in enumerate(LAYERS) if ".".join(parts[:n]) in names]
        if found:
            return found[0]
    raise AssertionError(f"{module} is in no layer of LAYERS")


def test_no_import_cycles():
    assert cycles(imports(modules())) == []


def test_supervision_knows_nothing_of_dspex():
    graph = imports(modules())
    assert not {(m, t) for m, ts in graph.items() if m.startswith("supervision") for t in ts if t.startswith("dspex")}


def test_dspex_layers_import_only_downward():
    graph = imports(modules())
    upward = sorted((m, t) for m, ts in graph.items() if m.startswith("dspex") for t in ts
                    if t.startswith("dspex") and t != "dspex" and layer(t) > layer(m))
    assert upward == []
