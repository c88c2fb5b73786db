"""KNNFewShot: per input, the ``k`` training examples nearest to it (cosine similarity of their
embeddings) become the demos of every predictor for that call."""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..errors import ConfigError
from ..primitives import Example, Prediction
from ..programs import Module
from .base import Teleprompter
from .fewshot import Demo
from .validate import check_student, check_trainset, structure


def _text(values: dict, keys: Sequence[str]) -> str:
    return " | ".join(f"{k}: {values[k]}" for k in keys if k in values)


class KNNProgram(Module):
    """The compiled program: the student, the training set and its vectors (computed once at compile)."""

    def __init__(self, student: Module, trainset: list[Example], vectors: list[list[float]], k: int,
                 embedder: Any) -> None:
        self.student, self.trainset, self.vectors, self.k, self.embedder = student, trainset, vectors, k, embedder

    def nearest(self, inputs: dict) -> list[Example]:
        """The ``k`` training examples nearest to ``inputs`` (ties: the earlier one)."""
        keys = list(self.trainset[0].inputs().keys())
        (query,) = self.embedder([_text(inputs, keys)])
        scored = sorted(range(len(self.trainset)), key=lambda i: (-_cosine(query, self.vectors[i]), i))
        return [self.trainset[i] for i in scored[:self.k]]

    def forward(self, **inputs: Any) -> Prediction:
        """The student's answer with the nearest examples as every predictor's demos (on a copy)."""
        demos = [Demo(ex.items()) for ex in self.nearest(inputs)]
        program = self.student.deepcopy()
        for predictor in program.predictors():
            predictor.demos = list(demos)
        return program(**inputs)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


class KNN:
    """DSPy's ``KNN`` settings as ``KNNFewShot.KNN`` holds them: ``k``, the ``trainset`` and the
    ``vectorizer`` (any callable embedding a list of texts). Calling it with inputs gives the ``k``
    nearest training examples (the trainset is embedded on the first call, or at compile)."""

    def __init__(self, k: int, trainset: Sequence[Example], vectorizer: Any) -> None:
        self.k, self.trainset, self.vectorizer = k, list(trainset), vectorizer
        self.vectors: list | None = None

    def embed_trainset(self) -> list:
        if self.vectors is None:
            keys = list(self.trainset[0].inputs().keys()) if self.trainset else []
            self.vectors = [list(map(float, v)) for v in
                            self.vectorizer([_text(dict(ex.inputs()), keys) for ex in self.trainset])]
        return self.vectors

    def __call__(self, **inputs: Any) -> list[Example]:
        return KNNProgram(Module(), self.trainset, self.embed_trainset(), self.k, self.vectorizer).nearest(inputs)


class KNNFewShot(Teleprompter):
    """DSPy's KNNFewShot: the compiled program gives every predictor, for each call, the ``k`` training
    examples whose inputs are nearest to that call's (cosine similarity of ``embedder`` vectors) as its
    demos. The training set is embedded once, at compile; each call embeds its own inputs."""

    def __init__(self, k: int = 3, trainset: Sequence[Example] = (), vectorizer: Any = None, *,
                 embedder: Any = None, **few_shot_bootstrap_args: Any) -> None:
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be an int >= 1, got {k!r}")
        embedder = embedder if embedder is not None else vectorizer
        if embedder is None or not callable(embedder):
            raise ConfigError("KNNFewShot needs vectorizer= (any callable embedding a list of texts, e.g. "
                              "dspex.Embedder('local/all-minilm-l6-v2') or dspex.Embedder(my_function))")
        self.k, self.trainset, self.embedder = k, list(trainset), embedder
        self.KNN = KNN(k, self.trainset, embedder)
        self.few_shot_bootstrap_args = few_shot_bootstrap_args  # DSPy's; taken, not used (demos are the neighbours)

    def compile(self, student: Module, *, teacher: Module | None = None, **job_options: Any) -> KNNProgram:
        """The student wrapped with its nearest-neighbour demos (``teacher`` is taken for DSPy's signature
        and not used: the demos are the training examples themselves)."""
        student = check_student(student)
        trainset = check_trainset(self.trainset, student)
        job = self.job({"student": structure(student), "k": self.k}, **job_options)
        compiled = None
        with job:
            vectors = self.KNN.embed_trainset() if self.KNN.trainset == trainset else KNN(
                self.k, trainset, self.embedder).embed_trainset()
            compiled = KNNProgram(student.reset_copy(), trainset, vectors, self.k, self.embedder)
        if compiled is None:  # Ctrl-C while the training set was embedded: nothing to return
            raise KeyboardInterrupt
        return job.report(compiled)


__all__ = ["KNN", "KNNFewShot", "KNNProgram"]
