"""What every optimizer checks before it compiles, the digests its journal's header is made of, and the
size of one call (for the budget check before anything is sent)."""

from __future__ import annotations

import copy
import inspect
import json
from typing import Any, Sequence

from ..errors import ConfigError, DspexError
from ..primitives import Example
from ..programs import Module


def check_student(student: Any) -> Module:
    """The student, if it is a dspex Module with at least one predictor."""
    if not isinstance(student, Module) or not student.named_predictors():
        raise ConfigError("the student must be a dspex Module with at least one predictor, got "
                          f"{type(student).__name__}")
    return student


def check_trainset(trainset: Any, student: Module, what: str = "trainset", *, inputs_marked: bool = True
                   ) -> list[Example]:
    """A non-empty list of Examples with inputs marked that carry every input the student reads
    (``inputs_marked=False``: for demos only, which the program is never called with, as LabeledFewShot's)."""
    if not isinstance(trainset, (list, tuple)) or not trainset:
        raise ConfigError(f"{what} must be a non-empty list of dspex.Example (got {type(trainset).__name__}"
                          f"{' of length 0' if isinstance(trainset, (list, tuple)) else ''})")
    needed = called_with(student)
    for i, ex in enumerate(trainset):
        if not isinstance(ex, Example) or (inputs_marked and ex.input_keys is None):
            raise ConfigError(f"{what}[{i}] must be a dspex.Example with inputs marked (example.with_inputs(...))")
        missing = needed - set(ex.keys())
        if missing:
            raise ConfigError(f"{what}[{i}] lacks the input field(s) {sorted(missing)} the program is called with")
    return copy.deepcopy(list(trainset))  # Examples are mutable: the compile works on its own copies


def called_with(student: Module) -> set[str]:
    """The inputs an example must carry for ``student(**example.inputs())``: a predictor's input fields;
    for a module, the parameters its ``forward`` requires (a RAG module's first predictor reads a
    ``context`` that ``forward`` retrieves, so the predictors say nothing about the call)."""
    predictors = student.predictors()
    if len(predictors) == 1 and predictors[0] is student:
        return set(student.signature.input_fields)
    try:
        params = list(inspect.signature(student.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin or C-level forward: nothing to check
        return set()
    required = {p.name for p in params
                if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not required and any(p.kind is p.VAR_KEYWORD for p in params):
        # forward(**inputs) hands its inputs on (ChainOfThought, ReAct, ...): what its first predictor reads
        return set(student.predictors()[0].signature.input_fields)
    return required


def structure(program: Module) -> list:
    """The program's predictors and their signatures (a teacher must match the student's)."""
    return [(name, p.signature.signature_string()) for name, p in program.named_predictors()]


def example_digest(examples: Sequence[Example]) -> list:
    """The examples as plain data, for a journal's fingerprint."""
    return [dict(ex.items()) for ex in examples]


def tokens_per_call(program: Module, example: Example) -> int:
    """A rough size of one call: the first predictor's zero-shot prompt (4 characters a token) and its
    answer budget."""
    predictor = program.predictors()[0]
    adapter = predictor.adapter_for(predictor.lm)
    try:
        prompt = adapter.format(predictor.signature, [], dict(example.inputs()))
    except DspexError:
        return 256
    answer = int(predictor.config.get("max_tokens", getattr(getattr(predictor.lm, "config", None), "max_tokens", 256)))
    return len(json.dumps(prompt)) // 4 + min(answer, 256)


__all__ = ["check_student", "check_trainset", "structure", "example_digest", "tokens_per_call"]
