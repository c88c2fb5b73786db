"""How a metric is called, decided once from its signature before a run starts, as DSPy's components call it.

DSPy calls a metric differently in each place: ``Evaluate`` as ``metric(example, prediction)``,
bootstrapping as ``metric(example, prediction, trace)``, GEPA as ``metric(gold, pred, trace, pred_name,
pred_trace)``. Users write their metrics for the place they use them (``def validate(example, pred)`` is the
most common form in DSPy's tutorials), so dspex binds the metric to the place it is given to and checks, up
front, that it can take what that place passes: a metric that cannot is a :class:`~dspex.errors.ConfigError`
naming the signature it needs, never a run whose every row fails with a ``TypeError``.
"""

from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError


class MetricPlace(enum.Enum):
    """Where a metric is used; each place passes what DSPy's component in that place passes."""

    EVALUATE = "metric(example, prediction)"
    BOOTSTRAP = "metric(example, prediction, trace)"
    FEEDBACK = "metric(gold, pred, trace, pred_name, pred_trace)"


class Form(enum.Enum):
    """How the bound metric is called: positionally with 2, 3 or 5 arguments, or 2 plus ``trace=``."""

    TWO = 2
    THREE = 3
    FIVE = 5
    TWO_TRACE_KEYWORD = "2+trace="


# The forms each place tries, in order: DSPy's own form first, then what also gives the metric what it asks
# for (a required third parameter gets the trace; a GEPA metric without the two predictor arguments is
# scored like an Evaluate metric, with its feedback if it returns one).
_FORMS = {
    MetricPlace.EVALUATE: (Form.TWO, Form.TWO_TRACE_KEYWORD, Form.THREE),
    MetricPlace.BOOTSTRAP: (Form.THREE, Form.TWO_TRACE_KEYWORD),
    MetricPlace.FEEDBACK: (Form.FIVE, Form.TWO, Form.TWO_TRACE_KEYWORD, Form.THREE),
}

_FIX = {
    MetricPlace.EVALUATE: "def metric(example, prediction, trace=None): ...",
    MetricPlace.BOOTSTRAP: "def metric(example, prediction, trace=None): ... (the trace is passed while "
                           "bootstrapping demos; add the third parameter)",
    MetricPlace.FEEDBACK: "def metric(gold, pred, trace=None, pred_name=None, pred_trace=None): ...",
}


def _accepts(signature: inspect.Signature, form: Form) -> bool:
    args: tuple = (None,) * (2 if form is Form.TWO_TRACE_KEYWORD else form.value)
    kwargs = {"trace": None} if form is Form.TWO_TRACE_KEYWORD else {}
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        return False
    return True


@dataclass(frozen=True)
class MetricCall:
    """A user's metric bound to one place: call it as ``bound(example, prediction, trace=None)`` whatever
    the metric's own signature; it receives exactly what DSPy would pass it there. Picklable (by value)
    whenever the metric is."""

    metric: Callable[..., Any]
    place: MetricPlace
    form: Form

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> Any:
        match self.form:
            case Form.TWO:
                return self.metric(example, prediction)
            case Form.THREE:
                return self.metric(example, prediction, trace)
            case Form.TWO_TRACE_KEYWORD:
                return self.metric(example, prediction, trace=trace)
            case Form.FIVE:
                return self.metric(example, prediction, trace, None, None)
        raise AssertionError(self.form)  # unreachable: every Form is matched above


def bind_metric(metric: Any, place: MetricPlace, component: str = "Evaluate") -> MetricCall:
    """Bind ``metric`` to ``place`` (``component`` names who asks, for the error). Raises ConfigError when
    ``metric`` is not callable or cannot take what that place passes."""
    if metric is None or not callable(metric):
        raise ConfigError(f"{component} needs a metric callable as {place.value}, got {metric!r}; write "
                          f"{_FIX[place]}")
    try:
        signature = inspect.signature(metric)
    except (TypeError, ValueError):  # a builtin without a signature: call it as DSPy does there
        return MetricCall(metric, place, _FORMS[place][0])
    for form in _FORMS[place]:
        if _accepts(signature, form):
            return MetricCall(metric, place, form)
    name = getattr(metric, "__qualname__", type(metric).__name__)
    raise ConfigError(f"{component} calls the metric as {place.value}, but {name}{signature} cannot take "
                      f"that; write {_FIX[place]}")


__all__ = ["MetricPlace", "MetricCall", "bind_metric"]
