"""Evaluation: every example ends as exactly one row (scored, or failed with a typed error)."""

from .evaluate import Evaluate, EvaluationCancelled
from .result import (EvalProgress, EvalRow, EvaluationResult, ExampleTimeout, MetricError, ProgramAborted, RemoteError,
                     load_journal)
from .tracker import Tracker

__all__ = ["Evaluate", "EvaluationResult", "EvalRow", "EvalProgress", "EvaluationCancelled", "ExampleTimeout",
           "MetricError", "ProgramAborted", "RemoteError", "Tracker", "load_journal"]
