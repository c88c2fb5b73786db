"""Scripted LM answers for the provider simulator (the Chat adapter's field-marker format), the questions
the engine tests ask, and the two-step module the trace and optimizer tests share."""

from __future__ import annotations

import dspex


def chat(**fields) -> str:
    """``chat(answer="Paris")`` → the text a model following the Chat adapter would return."""
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"


def shout(req) -> str:
    """The simulator's answer to a question ``qN``: ``QN`` (the question in capitals)."""
    number = req.last_user.split("[[ ## question ## ]]\n")[-1].split("\n")[0]
    return chat(answer=number.upper())


def shouted(example, pred, trace=None) -> bool:
    """The metric of :func:`shout`'s answers."""
    return pred.answer == example.question.upper()


def questions(n: int) -> list:
    """``n`` examples ``q0`` … whose answer :func:`shout` gives."""
    return [dspex.Example(question=f"q{i}", answer=f"Q{i}").with_inputs("question") for i in range(n)]


class TwoStep(dspex.Module):
    """Written as DSPy users write it: two predictors, the last Prediction returned, no dspex.combine."""

    def __init__(self, model):
        self.draft = dspex.Predict("question -> answer", lm=model)
        self.polish = dspex.Predict("question, draft -> answer", lm=model)

    def forward(self, question):
        first = self.draft(question=question)
        return self.polish(question=question, draft=first.answer)
