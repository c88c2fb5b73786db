"""Result rows and the EvaluationResult: one row per example, in input order."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..clients.messages import UsageTotals
from ..events import EvalProgress, RowFinished
from ..errors import DspexError
from ..jsonl import dumps_line
from ..journal import JournalType, Row, read
from ..adapters.base import to_jsonable
from ..primitives import Example, Prediction, Usage
from ..programs.trace import TraceStep


class RemoteError(DspexError):
    """An error from a worker that could not travel as itself (``type_name``: its class there)."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name, self.message = type_name, message
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self):
        return (RemoteError, (self.type_name, self.message))


class ExampleTimeout(DspexError, TimeoutError):
    """The example ran longer than ``timeout_per_example``; its late result, if any, is dropped."""


class MetricError(DspexError):
    """The metric raised for this example, or returned no finite number (the message says what)."""


class ProgramAborted(DspexError):
    """The program raised a BaseException that is not an Exception (``SystemExit``, a library's own):
    recorded as this example's failure instead of stopping the run (Ctrl-C still stops it)."""


def metric_score(value: Any) -> tuple[float, str | None]:
    """A metric's answer as (score, feedback): a number or bool, or an object with ``.score`` and
    optionally ``.feedback`` (``dspex.Prediction(score=0.0, feedback="...")``, GEPA's habit); a mapping
    with those keys works too. MetricError when there is no finite score in it."""
    if isinstance(value, Mapping):
        score, feedback = value.get("score", value), value.get("feedback")
    elif isinstance(value, (bool, int, float)):
        score, feedback = value, None
    else:
        score, feedback = getattr(value, "score", value), getattr(value, "feedback", None)
    try:
        number = float(score)
    except (TypeError, ValueError):
        raise MetricError(f"the metric returned {value!r}; return a number, a bool, or an object with a numeric "
                          ".score (and optionally .feedback)") from None
    if not math.isfinite(number):
        raise MetricError(f"the metric returned {value!r}; return a finite number (or a bool)")
    return number, None if feedback is None else str(feedback)


def _example_json(example: Example) -> dict:
    """The example as ``Example.from_json`` reads it; values JSON cannot hold as they are (a History, a
    pydantic model) as their JSON data."""
    try:
        return json.loads(example.to_json())
    except (TypeError, ValueError):
        inputs = example.input_keys
        return {"data": to_jsonable(dict(example.items())), "inputs": list(inputs) if inputs is not None else None}


def _step_json(step: Any) -> dict:
    return {"predictor": step.predictor if hasattr(step, "predictor") else str(step),  # (no repr made for nothing)
            "inputs": to_jsonable(getattr(step, "inputs", {})),
            "outputs": to_jsonable(getattr(step, "outputs", {})),
            "usage": [step.usage.prompt_tokens, step.usage.completion_tokens] if hasattr(step, "usage") else [0, 0],
            "cost": getattr(step, "cost", 0.0), "model": getattr(step, "model", "")}


def timeout_row(index: int, example: Example, attempts: int, worker: str) -> "EvalRow":
    """The row of an example that ran past ``timeout_per_example`` (its late result is dropped)."""
    return EvalRow(index=index, example=example, prediction=None, score=0.0, attempts=attempts, worker=worker,
                   error=ExampleTimeout(f"example {index} ran past timeout_per_example on {worker}"))


def portable(error: BaseException) -> BaseException:
    """The error itself if it pickles, else a RemoteError with its type and message."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - anything unpicklable is described instead
        return RemoteError(type(error).__name__, str(error))


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One example's outcome: a prediction and score, or an error (score 0 unless excluded)."""

    index: int
    example: Example
    prediction: Prediction | None
    score: float
    error: BaseException | None = None
    attempts: int = 1
    worker: str = ""
    feedback: str | None = None  # what the metric said besides the score (GEPA reflects on it)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_json(self) -> dict:
        pred = self.prediction
        is_prediction = isinstance(pred, Prediction)
        usage = pred.usage if is_prediction else Usage()
        return {"index": self.index, "example": _example_json(self.example),
                "prediction": (dict(pred.items()) if is_prediction else None if pred is None
                               else {"value": to_jsonable(pred)}),  # a program may return a dict, a list, text
                "usage": [usage.prompt_tokens, usage.completion_tokens],
                "cost": pred.cost if is_prediction else 0.0,
                "score": self.score, "error": None if self.error is None else
                {"type": type(self.error).__name__, "message": str(self.error)[:2000]},
                "attempts": self.attempts, "worker": self.worker, "feedback": self.feedback,
                "trace": [_step_json(s) for s in pred.trace] if is_prediction else []}

    def to_entry(self) -> Row:
        """The row as its journal holds it."""
        return Row(**self.to_json())

    @classmethod
    def from_json(cls, data: dict) -> "EvalRow":
        pred = None
        if data["prediction"] is not None:
            trace = [TraceStep(s["predictor"], s["inputs"], s["outputs"], Usage(*s.get("usage", [0, 0])),
                               s.get("cost", 0.0), s.get("model", "")) for s in data.get("trace", [])]
            pred = Prediction(data["prediction"], usage=Usage(*data.get("usage", [0, 0])), cost=data.get("cost", 0.0),
                              trace=trace)
        err = data["error"]
        return cls(data["index"], Example.from_json(json.dumps(data["example"])), pred, float(data["score"]),
                   RemoteError(err["type"], err["message"]) if err else None, data["attempts"], data["worker"],
                   data.get("feedback"))


@dataclass(init=False, repr=False)
class EvaluationResult:
    """``score``: the mean metric value in percent, 0–100, rounded to 2 decimals as DSPy reports it (failures
    count as 0, or are left out with ``exclude_failures``); ``mean``: the same mean as a fraction, unrounded.
    Each row's ``score`` is its metric's own value (``results`` gives DSPy's ``(example, prediction, score)``).

    ``usage`` is what this run really did, from the ledger: LM requests (not rows), successes, failures,
    cache hits, retries, tokens and cost, including the calls of examples that later timed out.
    ``cost`` is what the rows' predictions cost (rows resumed from a journal included).

    DSPy's form works too: ``EvaluationResult(score=67.3, results=[(example, prediction, score), ...])``
    (the score as given, the triples as rows); ``result["score"]`` / ``result["results"]`` as on DSPy's
    (a Prediction there).
    """

    rows: list[EvalRow]
    wall_s: float
    usage: UsageTotals
    exclude_failures: bool
    aborted: str | None
    duplicates_dropped: int
    run: str
    stated_score: float | None  # DSPy's EvaluationResult(score=...): reported as given

    def __init__(self, rows: list[EvalRow] | None = None, wall_s: float = 0.0, usage: UsageTotals | None = None,
                 exclude_failures: bool = False, aborted: str | None = None, duplicates_dropped: int = 0,
                 run: str = "", stated_score: float | None = None, *, score: float | None = None,
                 results: list[tuple] | None = None) -> None:
        if rows is None:
            rows = [EvalRow(index=i, example=ex, prediction=pred, score=_number(value))
                    for i, (ex, pred, value) in enumerate(results or [])]
        self.rows, self.wall_s = list(rows), wall_s
        self.usage = usage if usage is not None else UsageTotals()
        self.exclude_failures, self.aborted, self.duplicates_dropped, self.run = (exclude_failures, aborted,
                                                                                  duplicates_dropped, run)
        self.stated_score = stated_score if score is None else score

    @property
    def mean(self) -> float:
        """The mean metric value over the counted rows (0–1 for a 0/1 metric)."""
        if self.stated_score is not None:
            return self.stated_score / 100
        rows = [r for r in self.rows if not (self.exclude_failures and r.failed)]
        return sum(r.score for r in rows) / len(rows) if rows else 0.0

    @property
    def score(self) -> float:
        """The score in percent (0–100), as DSPy's ``EvaluationResult.score``."""
        if self.stated_score is not None:
            return self.stated_score
        return round(100 * self.mean, 2)

    @property
    def errors(self) -> list[EvalRow]:
        return [r for r in self.rows if r.failed]

    @property
    def all_failed(self) -> bool:
        """Every row failed: the score measures nothing (a metric that raises, a provider that is down)."""
        return bool(self.rows) and all(r.failed for r in self.rows)

    @property
    def cost(self) -> float:
        return sum(getattr(r.prediction, "cost", 0.0) for r in self.rows if r.prediction is not None)

    @property
    def results(self) -> list[tuple]:
        """DSPy's shape: ``(example, prediction, score)`` per example, in input order; a row whose program
        failed has an empty Prediction there, as DSPy's."""
        return [(r.example, Prediction() if r.prediction is None else r.prediction, r.score) for r in self.rows]

    def __getitem__(self, key: str) -> Any:
        if key in ("score", "results"):
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in ("score", "results")

    def keys(self) -> list[str]:
        return ["score", "results"]

    def toDict(self) -> dict:  # noqa: N802 - DSPy's spelling
        return {"score": self.score, "results": self.results}

    def to_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for row in self.rows:
                fh.write(dumps_line(row.to_json()))

    def to_table(self, limit: int = 20) -> str:
        lines = [f"score {self.score:.2f}% over {len(self.rows)} rows ({len(self.errors)} failed), "
                 f"{self.wall_s:.2f}s, ${self.cost:.6f}" + (f"; aborted: {self.aborted}" if self.aborted else ""),
                 f"{'#':>5}  {'score':>5}  {'worker':<10}  outcome"]
        for row in self.rows[:limit]:
            shown = dict(row.prediction.items()) if isinstance(row.prediction, Prediction) else row.prediction
            outcome = (f"{type(row.error).__name__}: {str(row.error)[:60]}" if row.error is not None
                       else str(shown if shown is not None else "")[:70])
            lines.append(f"{row.index:>5}  {row.score:>5.2f}  {row.worker:<10}  {outcome}")
        if len(self.rows) > limit:
            lines.append(f"... {len(self.rows) - limit} more rows")
        return "\n".join(lines)

    def __repr__(self) -> str:
        """DSPy's: ``EvaluationResult(score=67.3, results=<list of 3 results>)``."""
        return f"EvaluationResult(score={self.score}, results=<list of {len(self.rows)} results>)"

    def __str__(self) -> str:
        """The run at a glance: score, rows, failures, wall time."""
        return (f"EvaluationResult(score={self.score:.2f}%, rows={len(self.rows)}, errors={len(self.errors)}, "
                f"wall_s={self.wall_s:.2f})" + (f", aborted: {self.aborted}" if self.aborted else ""))


def _number(value: Any) -> float:
    try:
        return float(metric_score(value)[0])
    except MetricError:
        return 0.0


def load_journal(path: str | Path) -> list[EvalRow]:
    """Rows finished by an earlier run (a last line torn by a crash is skipped; any other line that is
    not a row is JournalCorrupt, naming the file and the line; a compile's journal is a JournalError)."""
    return [EvalRow.from_json(row.to_json()) for row in read(path, journal=JournalType.EVALUATION).of(Row)]


__all__ = ["EvalRow", "EvaluationResult", "RemoteError", "ExampleTimeout", "MetricError", "ProgramAborted", "portable",
           "metric_score", "RowFinished",
           "load_journal",
           "timeout_row"]
