"""The simulated task both libraries' optimizers run in benchmarks/bench_optimizers.py (importable by
either venv: no dspex or dspy import). Questions are ``q<i>``; the right answer is the question
upper-cased. On training questions (``t<i>``) the model is right only when i is a multiple of ``RARE``,
demos or not, so a bootstrap has to scan the trainset for its passing traces; on validation questions
(``v<i>``) it is right with a demo in the prompt and wrong without, so demos lift the score."""

from __future__ import annotations

import re

RARE = 40
MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]\n([^\n]*)")


def answer_text(messages: list[dict], last_user: str) -> str:
    demos = sum(1 for m in messages if m["role"] == "assistant")
    fields = dict(MARKER.findall(last_user))
    question = fields.get("question", "")
    digits = question[1:]
    if question.startswith("v"):
        right = demos > 0
    else:
        right = digits.isdigit() and int(digits) % RARE == 0
    return f"[[ ## answer ## ]]\n{question.upper() if right else 'wrong'}\n\n[[ ## completed ## ]]"


def rows(n: int, prefix: str = "q", start: int = 0) -> list[dict]:
    return [{"question": f"{prefix}{i}", "answer": f"{prefix}{i}".upper()} for i in range(start, start + n)]
