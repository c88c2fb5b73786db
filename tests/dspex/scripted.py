"""Scripted LM answers for the provider simulator (the Chat adapter's field-marker format), and the
two-step module the trace and optimizer tests share."""

from __future__ import annotations

import dspex


def chat(**fields) -> str:
    """``chat(answer="Paris")`` → the text a model following the Chat adapter would return."""
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"


class TwoStep(dspex.Module):
    """Written as DSPy users write it: two predictors, the last Prediction returned, no dspex.combine."""

    def __init__(self, model):
        self.draft = dspex.Predict("question -> answer", lm=model)
        self.polish = dspex.Predict("question, draft -> answer", lm=model)

    def forward(self, question):
        first = self.draft(question=question)
        return self.polish(question=question, draft=first.answer)
