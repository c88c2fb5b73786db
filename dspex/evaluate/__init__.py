"""Evaluation: every example ends as exactly one row (scored, or failed with a typed error)."""

from .auto_evaluation import CompleteAndGrounded, SemanticF1
from .evaluate import Evaluate, EvaluationCancelled
from .metrics import EM, answer_exact_match, answer_passage_match, normalize_text
from .result import (EvalProgress, EvalRow, EvaluationResult, ExampleTimeout, MetricError, ProgramAborted, RemoteError,
                     load_journal)
from .tracker import Tracker

__all__ = ["Evaluate", "EvaluationResult", "EvalRow", "EvalProgress", "EvaluationCancelled", "ExampleTimeout",
           "MetricError", "ProgramAborted", "RemoteError", "Tracker", "load_journal",
           "EM", "normalize_text", "answer_exact_match", "answer_passage_match", "SemanticF1", "CompleteAndGrounded"]
