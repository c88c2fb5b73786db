"""LM-judged metrics (DSPy's ``dspy.evaluate.auto_evaluation``): ``SemanticF1`` and ``CompleteAndGrounded``.

Each is a dspex Module over ChainOfThought judges, called as a metric: ``metric(example, pred, trace=None)``
returns a ``Prediction(score=...)``: the F1 of the judged scores, or, with a trace (while optimizing),
whether it reaches ``threshold``. The example carries ``question`` and ``response`` (the reference); the
prediction ``response`` (and ``context`` for groundedness).
"""

from __future__ import annotations

from typing import Any

from ..primitives import Prediction
from ..programs.module import Module
from ..programs.predict import ChainOfThought
from ..signatures import InputField, OutputField, Signature

_COVERS_TRUTH = "fraction (out of 1.0) of ground truth covered by the system response"
_COVERED_BY_TRUTH = "fraction (out of 1.0) of system response covered by the ground truth"


class SemanticRecallPrecision(Signature):
    """Judge a system's response against the ground truth: how much of the ground truth it covers (recall)
    and how much of it the ground truth covers (precision). When reasoning, list the key ideas of each
    response and say whether each appears in the other."""

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    recall: float = OutputField(desc=_COVERS_TRUTH)
    precision: float = OutputField(desc=_COVERED_BY_TRUTH)


class DecompositionalSemanticRecallPrecision(Signature):
    """Judge a system's response against the ground truth key idea by key idea: list the key ideas of
    each, discuss where they overlap, then give recall and precision."""

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    ground_truth_key_ideas: str = OutputField(desc="enumeration of key ideas in the ground truth")
    system_response_key_ideas: str = OutputField(desc="enumeration of key ideas in the system response")
    discussion: str = OutputField(desc="discussion of the overlap between ground truth and system response")
    recall: float = OutputField(desc=_COVERS_TRUTH)
    precision: float = OutputField(desc=_COVERED_BY_TRUTH)


class AnswerCompleteness(Signature):
    """Judge how complete a system's response is against the ground truth: list the key ideas of each,
    discuss where they overlap, then give the completeness."""

    question: str = InputField()
    ground_truth: str = InputField()
    system_response: str = InputField()
    ground_truth_key_ideas: str = OutputField(desc="enumeration of key ideas in the ground truth")
    system_response_key_ideas: str = OutputField(desc="enumeration of key ideas in the system response")
    discussion: str = OutputField(desc="discussion of the overlap between ground truth and system response")
    completeness: float = OutputField(desc=_COVERS_TRUTH)


class AnswerGroundedness(Signature):
    """Judge how grounded a system's response is in retrieved documents written by people: list the
    response's non-trivial, check-worthy claims, then discuss how far the retrieved context and basic
    common sense support them, and give the groundedness."""

    question: str = InputField()
    retrieved_context: str = InputField()
    system_response: str = InputField()
    system_response_claims: str = OutputField(desc="enumeration of non-trivial or check-worthy claims in the "
                                                   "system response")
    discussion: str = OutputField(desc="discussion of how supported the claims are by the retrieved context")
    groundedness: float = OutputField(desc="fraction (out of 1.0) of system response supported by the retrieved "
                                           "context")


def f1_score(precision: Any, recall: Any) -> float:
    """The harmonic mean of precision and recall, each first clamped to [0, 1]; 0 when both are 0."""
    p, r = (min(1.0, max(0.0, float(x))) for x in (precision, recall))
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _verdict(score: float, threshold: float, trace: Any) -> Prediction:
    return Prediction(score=score if trace is None else score >= threshold)


class SemanticF1(Module):
    """Semantic F1 of ``pred.response`` against ``example.response``, from an LM's judged precision and
    recall. ``decompositional=True`` has the judge list and compare key ideas first. With a trace the
    score is whether F1 reaches ``threshold``."""

    def __init__(self, threshold: float = 0.66, decompositional: bool = False) -> None:
        super().__init__()
        self.threshold = threshold
        self.module = ChainOfThought(DecompositionalSemanticRecallPrecision if decompositional
                                     else SemanticRecallPrecision)

    def forward(self, example: Any, pred: Any, trace: Any = None) -> Prediction:
        judged = self.module(question=example.question, ground_truth=example.response,
                             system_response=pred.response)
        return _verdict(f1_score(judged.precision, judged.recall), self.threshold, trace)


class CompleteAndGrounded(Module):
    """The F1 of two LM judgements: how complete ``pred.response`` is against ``example.response``, and how
    grounded it is in ``pred.context``. With a trace the score is whether it reaches ``threshold``."""

    def __init__(self, threshold: float = 0.66) -> None:
        super().__init__()
        self.threshold = threshold
        self.completeness_module = ChainOfThought(AnswerCompleteness)
        self.groundedness_module = ChainOfThought(AnswerGroundedness)

    def forward(self, example: Any, pred: Any, trace: Any = None) -> Prediction:
        complete = self.completeness_module(question=example.question, ground_truth=example.response,
                                            system_response=pred.response)
        grounded = self.groundedness_module(question=example.question, retrieved_context=pred.context,
                                            system_response=pred.response)
        return _verdict(f1_score(grounded.groundedness, complete.completeness), self.threshold, trace)


__all__ = ["SemanticF1", "CompleteAndGrounded", "SemanticRecallPrecision", "DecompositionalSemanticRecallPrecision",
           "AnswerCompleteness", "AnswerGroundedness", "f1_score"]
