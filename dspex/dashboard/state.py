"""What the dashboard shows, kept from the runtime's events: bounded, so a page left open for hours does
not grow the server's memory (the last MAX_EVENTS events, MAX_ROWS rows a run, MAX_RUNS runs).

Every value here is plain JSON-able data; keys never enter it (client keys are in no event, and row
traces hold inputs and outputs, not requests).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Callable

from supervision import Kind, LifecycleEvent, SupervisionError
from supervision.messages import ActorEvent
from supervision.telemetry import EventBus

from ..adapters.base import to_jsonable
from ..errors import JournalError
from ..events import CompileProgress, EvalProgress, RowFinished
from ..journal import JournalType, Row, read

MAX_EVENTS, MAX_ROWS, MAX_RUNS, MAX_CANDIDATES = 500, 2000, 50, 500


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return to_jsonable(asdict(value))
    return to_jsonable(value)


def row_summary(row: Any) -> dict:
    pred = row.prediction
    error = None if row.error is None else {"type": type(row.error).__name__, "message": str(row.error)[:500]}
    return {"index": row.index, "inputs": _plain(dict(row.example.inputs())),
            "prediction": _plain(dict(pred.items())) if hasattr(pred, "items") else _plain(pred),
            "score": row.score, "error": error, "attempts": row.attempts, "worker": row.worker,
            "feedback": row.feedback, "raw": str(getattr(pred, "raw", ""))[:4000],
            "tokens": getattr(getattr(pred, "usage", None), "total_tokens", 0),
            "cost": getattr(pred, "cost", 0.0),
            "trace": [{"predictor": s.predictor, "model": getattr(s, "model", ""), "inputs": _plain(s.inputs),
                       "outputs": _plain(s.outputs), "prompt_tokens": s.usage.prompt_tokens,
                       "completion_tokens": s.usage.completion_tokens, "cost": s.cost}
                      for s in getattr(pred, "trace", ()) or ()]}


class DashboardState:
    """Subscribed to one runtime; ``snapshot()`` for a page load, ``listen()`` for live updates."""

    def __init__(self, rt: Any, runs_dir: Path | None = None) -> None:
        self.rt, self.runs_dir = rt, runs_dir
        self.lock = threading.Lock()
        self.events: deque[dict] = deque(maxlen=MAX_EVENTS)
        self.tree: dict[str, dict] = {}  # "supervisor/child" -> status
        self.runs: OrderedDict[str, dict] = OrderedDict()
        self.rows: dict[str, OrderedDict] = {}
        self.breakers: deque[dict] = deque(maxlen=MAX_EVENTS)
        self.listeners = EventBus()  # the open pages' update queues
        self.unsubscribe = rt.subscribe(self.on_event)

    def close(self) -> None:
        self.unsubscribe()

    def listen(self, push: Callable[[dict], None]) -> Callable[[], None]:
        """``push(update)`` for every change from now on; returns the function that stops it."""
        return self.listeners.subscribe(push)

    def _push(self, update: dict) -> None:
        self.listeners.publish(update)

    # --- events ---------------------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        match event:
            case LifecycleEvent():
                self._lifecycle(event)
            case ActorEvent():
                entry = {"kind": event.kind, "actor": event.actor, "subject": event.subject, "reason": event.reason,
                         "at": event.at or time.time()}
                with self.lock:
                    self.events.append({"type": "actor", **entry})
                    if event.kind.startswith("breaker"):
                        self.breakers.append(entry)
                self._push({"type": "actor", "event": entry})
            case EvalProgress():
                self._run(event.run, "evaluation", _plain(event))
            case CompileProgress():
                self._run(event.run, "compile", _plain(event))
            case RowFinished():
                summary = row_summary(event.row)
                with self.lock:
                    rows = self.rows.setdefault(event.run, OrderedDict())
                    rows[summary["index"]] = summary
                    while len(rows) > MAX_ROWS:
                        rows.popitem(last=False)
                    if summary["error"] is not None and event.run in self.runs:  # typed errors, counted by type
                        errors = self.runs[event.run].setdefault("errors", {})
                        errors[summary["error"]["type"]] = errors.get(summary["error"]["type"], 0) + 1
                self._push({"type": "row", "run": event.run, "row": {k: summary[k] for k in summary if k != "trace"}})
            case _:
                pass  # other dspex events are not shown

    def _lifecycle(self, event: LifecycleEvent) -> None:
        key = f"{event.supervisor}/{event.child}"
        with self.lock:
            node = self.tree.setdefault(key, {"supervisor": event.supervisor, "child": event.child, "restarts": 0,
                                              "status": "?", "last_exit": "", "pid": 0, "address": ""})
            node["status"] = {"start": "running", "restart": "running", "exit": "exited", "stop": "stopped",
                              "start_failed": "failed"}.get(event.kind, node["status"])
            node["restarts"] += event.kind == "restart"
            if event.kind == "exit":
                node["last_exit"] = event.reason
            node["pid"], node["address"] = event.pid or node["pid"], event.address or node["address"]
            entry = {"type": "lifecycle", "kind": event.kind, "supervisor": event.supervisor, "child": event.child,
                     "reason": event.reason, "at": event.at or time.time()}
            self.events.append(entry)
            snapshot = dict(node)
        self._push({"type": "tree", "key": key, "node": snapshot, "event": entry})

    def _run(self, run: str, kind: str, progress: dict) -> None:
        with self.lock:
            entry = self.runs.setdefault(run, {"run": run, "kind": kind, "started": time.time(), "best": [],
                                               "candidates": []})
            entry["progress"] = progress
            if kind == "compile" and progress.get("score") is not None:
                entry["candidates"].append({"candidate": progress.get("candidate"), "phase": progress.get("phase"),
                                            "score": progress["score"]})
                entry["best"].append(progress.get("best"))
                del entry["candidates"][:-MAX_CANDIDATES], entry["best"][:-MAX_CANDIDATES]
            while len(self.runs) > MAX_RUNS:
                old, _ = self.runs.popitem(last=False)
                self.rows.pop(old, None)
            summary = {k: entry[k] for k in ("run", "kind", "progress")}
        self._push({"type": "run", **summary})

    # --- views ----------------------------------------------------------------------------------------

    def snapshot(self) -> dict:
        with self.lock:
            runs = [dict(r) for r in self.runs.values()]
            events = list(self.events)[-100:]
            tree = dict(self.tree)
            breakers = list(self.breakers)[-50:]
        return {"tree": self.supervision_tree(tree), "clients": self.clients(), "runs": runs, "events": events,
                "breaker_history": breakers}

    def supervision_tree(self, seen: dict[str, dict]) -> list[dict]:
        """The live tree (asked of the supervisors) with what the events said about each child."""
        nodes: list[dict] = []

        def walk(ref: Any, depth: int) -> None:
            try:
                children = ref.which_children(timeout=5.0)
            except SupervisionError:
                return
            for info in children:
                key = f"{ref.path}/{info.id}"
                known = seen.get(key, {})
                nodes.append({"path": key, "id": info.id, "depth": depth, "supervisor": ref.path,
                              "kind": info.kind.value if hasattr(info.kind, "value") else str(info.kind),
                              "status": "running" if info.ref is not None else known.get("status", "down"),
                              "restarts": known.get("restarts", 0), "last_exit": known.get("last_exit", ""),
                              "pid": known.get("pid", 0), "address": known.get("address", "")})
                if info.kind == Kind.SUPERVISOR and info.ref is not None:
                    walk(info.ref, depth + 1)

        for top in self.rt.supervisors():
            nodes.append({"path": top.path, "id": top.path, "depth": 0, "supervisor": "", "kind": "supervisor",
                          "status": "running", "restarts": 0, "last_exit": "", "pid": 0, "address": ""})
            walk(top, 1)
        listed = {n["path"] for n in nodes}
        for key, node in seen.items():  # evaluation supervisors and others known from their events
            if key not in listed:
                nodes.append({"path": key, "id": node["child"], "depth": 1, "supervisor": node["supervisor"],
                              "kind": "child", **{k: node[k] for k in ("status", "restarts", "last_exit", "pid",
                                                                       "address")}})
        return nodes

    def clients(self) -> list[dict]:
        from ..clients.messages import GetStatus

        out = []
        if self.rt.clients is None:
            return out
        latencies: dict[str, list[float]] = {}
        for call in self.rt.engines.history():
            latencies.setdefault(call["model"], []).append(call.get("latency_s") or 0.0)
        configs = self.rt.client_configs()
        for info in self.rt.clients.which_children(timeout=5.0):
            if info.id == "ledger" or info.ref is None:
                continue
            try:
                status = info.ref.call(GetStatus(), 5.0)
            except SupervisionError:
                continue
            cfg = configs.get(status.client)
            model = cfg.qualified if cfg is not None else status.client
            times = sorted(latencies.get(model, []))
            out.append({"id": info.id, "client": status.client, **_plain(status),
                        "budget_usd": getattr(cfg, "budget_usd", None),
                        "latency_p50": times[len(times) // 2] if times else None,
                        "latency_p95": times[min(len(times) - 1, int(len(times) * 0.95))] if times else None})
        return out

    def run_rows(self, run: str) -> list[dict]:
        with self.lock:
            return [{k: r[k] for k in r if k != "trace"} for r in self.rows.get(run, {}).values()]

    def row(self, run: str, index: int) -> dict | None:
        with self.lock:
            return self.rows.get(run, {}).get(index)

    # --- past runs (files under runs_dir) --------------------------------------------------------------

    def past_runs(self) -> list[dict]:
        if self.runs_dir is None or not self.runs_dir.is_dir():
            return []
        found = []
        inside = self.runs_dir.resolve()
        for path in sorted(self.runs_dir.rglob("*.jsonl")):
            if inside not in path.resolve().parents:
                continue  # a link to a file outside the runs directory: never read
            summary = summarize_journal(path)
            if summary is not None:
                found.append({"name": str(path.relative_to(self.runs_dir)), **summary})
        return found[:500]

    def past_run(self, name: str) -> dict | None:
        if self.runs_dir is None or "\0" in name or not name.endswith(".jsonl"):
            return None  # only the journals past_runs lists have a name
        try:
            path = (self.runs_dir / name).resolve()
            if self.runs_dir.resolve() not in path.parents or not path.is_file():
                return None  # nothing outside the runs directory is ever read
        except (OSError, ValueError):  # a name too long for the file system, or one it cannot hold
            return None
        return summarize_journal(path, rows=True)


def summarize_journal(path: Path, rows: bool = False) -> dict | None:
    """An evaluation journal (rows) or a compile journal (header, steps) as a summary; None for a file
    that is neither (damaged, another shape, a score that is no finite number, a newer format): it is left
    out of the list. A last line torn by a crash is skipped, so a run killed mid-write is still listed."""
    try:
        journal = read(path)
    except (OSError, JournalError):
        return None
    header, entries = journal.header, journal.entries
    if header is not None and header.journal == JournalType.COMPILE:
        shown = [e.to_json() for e in (header, *entries)][-200:]
        return _json_safe({"kind": "compile", "optimizer": header.optimizer, "steps": len(entries),
                           "best": None if journal.best() is None else round(100 * journal.best(), 2), **({"entries": shown} if rows else {})})
    if not entries or not all(isinstance(e, Row) for e in entries):
        return None
    out = {"kind": "evaluation", "examples": len(entries), "score": round(100 * sum(e.score for e in entries) / len(entries), 2),
           "failed": sum(1 for e in entries if e.error), "cost": sum(e.cost for e in entries)}
    if rows:
        out["rows"] = [{"index": e.index, "score": e.score, "error": e.error, "prediction": e.prediction}
                       for e in entries[:MAX_ROWS]]
    return _json_safe(out)


def _json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity (JSON has none; a prediction may hold one) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


__all__ = ["DashboardState", "row_summary", "summarize_journal"]
