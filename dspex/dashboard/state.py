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
from ..clients.scope import RUN_SEP
from ..config import HOST_CAPABILITY
from ..errors import EvaluationCancelled, JournalError
from ..events import CompileProgress, CompileStep, EvalProgress, RowFinished
from ..scrub import bounded, known_keys
from ..journal import JournalType, Row, read

MAX_EVENTS, MAX_ROWS, MAX_RUNS, MAX_CANDIDATES = 500, 2000, 50, 500
MAX_ROW_SETS = 2 * MAX_RUNS  # runs (a compile's evaluations included) whose rows are kept
MAX_TEXT, MAX_MESSAGES = 4000, 20  # of a drill-down's messages and raw answers
MAX_SAMPLES = 300  # points of each client's cost and tokens over time


NODE_PROBE = 1.0  # seconds a host has to answer the nodes panel's question before it shows as unreachable


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return to_jsonable(asdict(value))
    return to_jsonable(value)


def _messages(messages: Any, keys: frozenset[str]) -> list[dict]:
    """The messages a predictor call sent, bounded (MAX_MESSAGES, MAX_TEXT each), keys masked; a
    multimodal content list is shown as its text parts."""
    out = []
    for m in list(messages or ())[:MAX_MESSAGES]:
        content = m.get("content", "") if isinstance(m, dict) else m
        if isinstance(content, list):
            content = "\n".join(str(part.get("text", f"[{part.get('type', 'part')}]")) if isinstance(part, dict)
                                else str(part) for part in content)
        role = str(m.get("role", "")) if isinstance(m, dict) else ""
        out.append({"role": role, "content": bounded(content, MAX_TEXT, keys)})
    return out


def row_summary(row: Any) -> dict:
    pred = row.prediction
    keys = known_keys()
    error = None if row.error is None else {"type": type(row.error).__name__, "message": str(row.error)[:500]}
    return {"index": row.index, "inputs": _plain(dict(row.example.inputs())),
            "prediction": _plain(dict(pred.items())) if hasattr(pred, "items") else _plain(pred),
            "score": row.score, "error": error, "attempts": row.attempts, "worker": row.worker,
            "skipped": isinstance(row.error, EvaluationCancelled),  # never run (the run stopped first): no failure
            "feedback": row.feedback, "raw": bounded(getattr(pred, "raw", ""), MAX_TEXT, keys),
            "tokens": getattr(getattr(pred, "usage", None), "total_tokens", 0),
            "cost": getattr(pred, "cost", 0.0),
            "trace": [{"predictor": s.predictor, "model": getattr(s, "model", ""), "inputs": _plain(s.inputs),
                       "outputs": _plain(s.outputs), "prompt_tokens": s.usage.prompt_tokens,
                       "completion_tokens": s.usage.completion_tokens, "cost": s.cost,
                       "messages": _messages(getattr(s, "messages", ()), keys),
                       "raw": bounded(getattr(s, "raw", ""), MAX_TEXT, keys)}
                      for s in getattr(pred, "trace", ()) or ()]}


class DashboardState:
    """Subscribed to one runtime; ``snapshot()`` for a page load, ``listen()`` for live updates."""

    def __init__(self, rt: Any, runs_dir: Path | None = None) -> None:
        self.rt, self.runs_dir = rt, runs_dir
        self.lock = threading.Lock()
        self.events: deque[dict] = deque(maxlen=MAX_EVENTS)
        self.tree: dict[str, dict] = {}  # "supervisor/child" -> status
        self.runs: OrderedDict[str, dict] = OrderedDict()
        self.rows: OrderedDict[str, OrderedDict] = OrderedDict()  # run -> its rows (MAX_ROW_SETS runs)
        self.breakers: deque[dict] = deque(maxlen=MAX_EVENTS)
        self.series: dict[str, deque] = {}  # client id -> (time, cost, tokens) samples, for the charts
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
            case CompileStep():
                self._step(event)
            case RowFinished():
                summary = row_summary(event.row)
                with self.lock:
                    rows = self.rows.setdefault(event.run, OrderedDict())
                    self.rows.move_to_end(event.run)
                    rows[summary["index"]] = summary
                    while len(rows) > MAX_ROWS:
                        rows.popitem(last=False)
                    while len(self.rows) > MAX_ROW_SETS:
                        self.rows.popitem(last=False)
                    error = summary["error"]
                    if error is not None and not summary["skipped"] and event.run in self.runs:
                        errors = self.runs[event.run].setdefault("errors", {})  # typed errors, counted by type
                        errors[error["type"]] = errors.get(error["type"], 0) + 1
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

    def _entry(self, run: str, kind: str) -> dict:
        """The top-level run's entry (the lock held), made on its first event; the oldest goes past MAX_RUNS."""
        entry = self.runs.get(run)
        if entry is None:
            entry = self.runs[run] = {"run": run, "kind": kind, "started": time.time(), "best": [],
                                      "candidates": [], "steps": {}, "prompts": {}, "progress": {}}
            while len(self.runs) > MAX_RUNS:
                old, _ = self.runs.popitem(last=False)
                self.rows.pop(old, None)
        return entry

    def _run(self, run: str, kind: str, progress: dict) -> None:
        """A run's progress. A run inside another (``compile:eval``: a compile's evaluations and nested
        compiles) is a step of its top-level run, not a run of its own in the list."""
        top, _, inner = run.partition(RUN_SEP)
        with self.lock:
            entry = self._entry(top, "compile" if inner else kind)
            if inner:
                if kind != "evaluation":
                    return  # a compile inside a compile: its evaluations are the outer one's steps
                step = entry["steps"].setdefault(run, {"run": run})
                step["progress"] = progress
                self._trim_steps(entry)
                update = {"type": "step", "run": top, "step": dict(step)}
            else:
                entry["kind"], entry["progress"] = kind, progress
                if kind == "compile" and progress.get("score") is not None:
                    entry["candidates"].append({"candidate": progress.get("candidate"), "phase": progress.get("phase"),
                                                "score": progress["score"], "parents": list(progress.get("parents") or ())})
                    entry["best"].append(progress.get("best"))
                    del entry["candidates"][:-MAX_CANDIDATES], entry["best"][:-MAX_CANDIDATES]
                update = {"type": "run", **{k: entry[k] for k in ("run", "kind", "progress")}}
        self._push(update)

    def _step(self, event: CompileStep) -> None:
        """A compile scored a program: the step (its evaluation) gets its phase, name, score and prompt."""
        top = event.run.partition(RUN_SEP)[0]
        with self.lock:
            entry = self._entry(top, "compile")
            step = entry["steps"].setdefault(event.step_run, {"run": event.step_run})
            step.update({"phase": event.phase, "name": event.name, "examples": event.examples,
                         "score": event.score, "digest": event.digest})
            entry["prompts"].setdefault(event.digest, _json_safe(_plain(list(event.prompts))))
            self._trim_steps(entry)
            update = {"type": "step", "run": top, "step": dict(step), "digest": event.digest,
                      "prompt": entry["prompts"][event.digest]}
        self._push(update)

    @staticmethod
    def _trim_steps(entry: dict) -> None:
        steps, prompts = entry["steps"], entry["prompts"]
        for old in list(steps)[:-MAX_CANDIDATES]:
            del steps[old]
        if len(prompts) > MAX_CANDIDATES:
            used = {s.get("digest") for s in steps.values()}
            for digest in [d for d in prompts if d not in used][:len(prompts) - MAX_CANDIDATES]:
                del prompts[digest]

    # --- views ----------------------------------------------------------------------------------------

    def snapshot(self) -> dict:
        with self.lock:
            runs = [{**r, "steps": list(r["steps"].values()), "prompts": dict(r["prompts"])} for r in self.runs.values()]
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
            plain = _plain(status)
            out.append({"id": info.id, "client": status.client, **plain,
                        "budget_usd": getattr(cfg, "budget_usd", None),
                        "latency_p50": times[len(times) // 2] if times else None,
                        "latency_p95": times[min(len(times) - 1, int(len(times) * 0.95))] if times else None,
                        "series": self._sample(info.id, plain.get("totals") or {})})
        return out

    def _sample(self, client: str, totals: dict) -> list:
        """Add a point to the client's cost and tokens over time (when they changed, or a minute passed) and
        return the series, oldest first: [[time, cost, tokens], ...]."""
        now = time.time()
        cost = float(totals.get("cost") or 0.0)
        tokens = int(totals.get("prompt_tokens") or 0) + int(totals.get("completion_tokens") or 0)
        with self.lock:
            points = self.series.setdefault(client, deque(maxlen=MAX_SAMPLES))
            if not points or points[-1][1:] != [cost, tokens] or now - points[-1][0] >= 60:
                points.append([now, cost, tokens])
            return [list(p) for p in points]

    def nodes(self) -> dict:
        """The hosts that joined this runtime (a ``tcp`` leader), each asked now whether it answers
        (``Runtime.nodes``): address, state, seconds its answer took, and this leader's own address."""
        actors = self.rt.actors
        if actors.base != "tcp":
            return {"leader": None, "base": actors.base, "nodes": []}
        infos = self.rt.nodes(timeout=NODE_PROBE)
        return {"leader": f"{actors.bind_host}:{actors.admin_port}", "base": actors.base,
                "nodes": [{"address": i.address, "state": i.state.value, "answered_in": i.answered_in,
                           "host": HOST_CAPABILITY in i.capabilities} for i in infos]}

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
        out["rows"] = [{"index": e.index, "score": e.score, "error": e.error, "prediction": e.prediction,
                        "example": e.example, "cost": e.cost} for e in entries[:MAX_ROWS]]
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
