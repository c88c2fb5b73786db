"""DSPy's ``bootstrap_trace_data``: run a program over a data set and keep, per example, what every
predictor call was given and answered (the traces GEPA and fine-tuning learn from).

The examples run concurrently through :class:`~dspex.evaluate.Evaluate` (so on the runtime's client
actors, with its limits, budgets and worker processes). Each run is traced by dspex's own trace scope
(:mod:`dspex.programs.trace`: a predictor's dotted name, its inputs and outputs), which crosses threads and
worker processes; the trace handed back is DSPy's ``settings.trace`` shape, ``(predictor, inputs,
prediction)`` per call, with ``predictor`` the caller's program's own predictor of that name.

A parse failure (the LM's answer could not be read even after dspex's re-ask and JSON fallback) is kept
as a :class:`FailedPrediction` with the predictor's trace entry when ``capture_failed_parses`` is set
(its ``format_reward`` grows with the share of output fields that did parse); otherwise it is an error
like any other. ``capture_crashes`` keeps any other program error as a FailedPrediction too (an LM error
never: it says nothing about the program). An example whose run is an error is raised when
``raise_on_error`` (its own error, typed), else left out.

Unlike DSPy: ``capture_failed_parses=False`` makes a parse failure an error (DSPy keeps it whatever the
flag says); a failed call's inputs in the trace are the program's (as DSPy's), since the parse error does
not carry the predictor's own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypedDict

from ..errors import AdapterParseError, LMError
from ..evaluate import Evaluate
from ..evaluate.metric_call import MetricPlace, bind_metric
from ..primitives import Example, Prediction, Usage
from ..programs import Module
from ..programs.trace import TraceStep, collect

logger = logging.getLogger(__name__)


@dataclass
class FailedPrediction:
    """What a run that failed left instead of a prediction: the LM's text (or the error) and the score the
    metric is replaced with (None: ``format_failure_score``)."""

    completion_text: str
    format_reward: float | None = None


class TraceData(TypedDict, total=False):
    """One example's entry (``score`` only when a metric was given)."""

    example_ind: int
    example: Example
    prediction: Prediction | FailedPrediction
    trace: list[tuple[Any, dict[str, Any], Prediction | FailedPrediction]]
    score: Any


@dataclass
class _Run:
    """What one traced run hands back to the caller's process: the program's prediction (or the failure),
    its predictor calls and the failed call (its predictor's name and the program's inputs)."""

    prediction: Any
    steps: list[TraceStep]
    failed: tuple[str, dict] | None = None
    usage: Usage = field(init=False)
    cost: float = field(init=False)

    def __post_init__(self) -> None:  # what the evaluation's tally and the budget count
        self.usage = sum((s.usage for s in self.steps), Usage())
        self.cost = sum(s.cost for s in self.steps)


def format_reward(expected: Sequence[str], missing: Sequence[str], failure_score: float,
                  format_failure_score: float) -> float:
    """A failed parse's score: ``format_failure_score`` when no output field was read, rising linearly to
    ``failure_score`` with the share of ``expected`` fields that were (those not ``missing``)."""
    present = [name for name in expected if name not in missing] if missing else []
    if not present or not expected:
        return format_failure_score
    return format_failure_score + (failure_score - format_failure_score) * len(present) / len(expected)


def failed_predictor(program: Module, signature: Any) -> str | None:
    """The dotted name of ``program``'s predictor whose signature failed to parse (the same signature, else
    the same fields); None when no predictor of the program has it."""
    named = program.named_predictors()
    same = [name for name, p in named if p.signature is signature or p.signature == signature]
    if same:
        return same[0]
    fields = (list(getattr(signature, "input_fields", ())), list(getattr(signature, "output_fields", ())))
    alike = [name for name, p in named if (list(p.signature.input_fields), list(p.signature.output_fields)) == fields]
    return alike[0] if alike else None


class _Traced(Module):
    """``program`` as the evaluation runs it: each call returns a :class:`_Run` (never raising for what
    the options say to keep)."""

    def __init__(self, program: Module, capture_failed_parses: bool, capture_crashes: bool, failure_score: float,
                 format_failure_score: float, log_format_failures: bool) -> None:
        self.program = program
        self.capture_failed_parses, self.capture_crashes = capture_failed_parses, capture_crashes
        self.failure_score, self.format_failure_score = failure_score, format_failure_score
        self.log_format_failures = log_format_failures

    def forward(self, **inputs: Any) -> _Run:
        with collect(self.program) as steps:
            try:
                return _Run(self.program(**inputs), list(steps))
            except AdapterParseError as exc:
                name = failed_predictor(self.program, exc.signature) if self.capture_failed_parses else None
                if name is None:
                    raise
                if self.log_format_failures:
                    logger.warning("The LM's answer for %s could not be parsed (it did not follow the adapter's "
                                   "format); kept as a FailedPrediction", name)
                expected = list(getattr(exc.signature, "output_fields", {}) or {})
                reward = format_reward(expected, exc.missing_fields, self.failure_score, self.format_failure_score)
                return _Run(FailedPrediction(exc.raw_text, reward), list(steps), (name, dict(inputs)))
            except LMError:
                raise  # the provider failed, not the program: an error row, never a FailedPrediction
            except Exception as exc:  # noqa: BLE001 - capture_crashes keeps any program error, as DSPy's
                if not self.capture_crashes:
                    raise
                logger.warning("The program raised on an example; kept as a FailedPrediction: %s: %s",
                               type(exc).__name__, exc)
                return _Run(FailedPrediction(f"{type(exc).__name__}: {exc}"), list(steps))


def _scorer(metric: Callable | None, format_failure_score: float) -> Callable:
    """The evaluation's metric: the user's on a real prediction, the failure's own score on a failed one,
    1 without a metric (every run that finished is kept)."""
    bound = bind_metric(metric, MetricPlace.EVALUATE, "bootstrap_trace_data") if metric is not None else None

    def trace_metric(example: Example, run: Any, trace: Any = None) -> Any:
        prediction = run.prediction if isinstance(run, _Run) else run
        if isinstance(prediction, FailedPrediction):
            return prediction.format_reward if prediction.format_reward is not None else format_failure_score
        return bound(example, prediction) if bound is not None else True

    return trace_metric


def dspy_trace(program: Module, run: _Run) -> list[tuple[Any, dict, Any]]:
    """The run's calls as DSPy's ``settings.trace`` holds them: ``(predictor, inputs, prediction)``, the
    predictor being ``program``'s own of that name (a predictor made on the fly, not the program's, is named
    by its class)."""
    predictors = dict(program.named_predictors())
    trace: list[tuple[Any, dict, Any]] = [
        (predictors.get(s.predictor, s.predictor), dict(s.inputs),
         Prediction(dict(s.outputs), usage=s.usage, cost=s.cost, trace=[s])) for s in run.steps]
    if run.failed is not None:
        name, inputs = run.failed
        trace.append((predictors.get(name, name), inputs, run.prediction))
    return trace


def bootstrap_trace_data(program: Module, dataset: Sequence[Example], metric: Callable | None = None,
                         num_threads: int | None = None, raise_on_error: bool = True,
                         capture_failed_parses: bool = False, failure_score: float = 0,
                         format_failure_score: float = -1, log_format_failures: bool = False,
                         callback_metadata: dict[str, Any] | None = None,
                         capture_crashes: bool = False) -> list[TraceData]:
    """``program`` run on every example of ``dataset`` (``num_threads`` at once; Evaluate's default when
    None): one ``{"example", "prediction", "trace", "example_ind"}`` dict per example kept, in order, with
    ``"score"`` (the metric's value, or a failure's reward) when ``metric`` is given. See the module's doc
    for failures; ``callback_metadata`` goes to the evaluation's callbacks."""
    scorer = _scorer(metric, format_failure_score)
    evaluator = Evaluate(devset=dataset, metric=scorer, num_threads=num_threads, display_progress=True,
                         failure_score=failure_score, timeout_per_example=None, warn_if_all_failed=False)
    traced = _Traced(program, capture_failed_parses, capture_crashes, failure_score, format_failure_score,
                     log_format_failures)
    outcome = evaluator(traced, metric=scorer, callback_metadata=callback_metadata)
    # (DSPy's tests hand in an evaluator whose result holds ``results`` only: the rows are read when there)
    errors = {row.index: row.error for row in getattr(outcome, "rows", ()) if row.error is not None}
    feedback = {row.index: row.feedback for row in getattr(outcome, "rows", ()) if row.feedback is not None}
    data: list[TraceData] = []
    for index, (example, run, score) in enumerate(outcome.results):
        if index in errors or not isinstance(run, _Run):  # the run or the metric failed
            error = errors.get(index)
            if raise_on_error:
                if isinstance(error, BaseException):
                    raise error
                raise ValueError(f"bootstrap_trace_data: example {index} has no trace (its run failed)")
            logger.warning("bootstrap_trace_data: example %d left out, its run failed: %s", index, error)
            continue
        entry: TraceData = {"example": example, "prediction": run.prediction, "trace": dspy_trace(program, run),
                            "example_ind": index}
        if metric is not None:
            entry["score"] = score if index not in feedback else Prediction(score=score, feedback=feedback[index])
        data.append(entry)
    return data


__all__ = ["bootstrap_trace_data", "FailedPrediction", "TraceData"]
