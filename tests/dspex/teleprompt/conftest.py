"""A simulated task where demos measurably help, deterministically.

Questions are ``<prefix><i>``; the right answer is the question upper-cased. On training questions
(prefix ``t``) the simulated model is right only on the "easy" ones (an even i), demos or not, so a
teacher's passing traces are the easy ones. On any other question it is right on the easy ones
zero-shot and on every one with at least one demo in the prompt: zero-shot scores 0.5, any program
with demos 1.0.
"""

from __future__ import annotations

import re

import pytest

import dspex
from dspex.testing import ProviderServer, instruction_task

from ..scripted import chat

KEY = "sk-test-teleprompt-123456"


def answer(req) -> str:
    demos = sum(1 for m in req.messages if m["role"] == "assistant")
    fields = dict(re.findall(r"\[\[ ## (\w+) ## \]\]\n([^\n]*)", req.last_user))
    question = fields.get("question") or fields.get("draft") or ""
    easy = question[-1:].isdigit() and int(question[-1]) % 2 == 0
    helped = bool(demos) and not question.startswith("t")
    if "draft" in fields:  # the second predictor of a two-step module: polishes the draft
        return chat(answer=fields["draft"] if helped or easy else "wrong")
    return chat(answer=question.upper() if helped or easy else "wrong")


def data(n: int, prefix: str = "w") -> list[dspex.Example]:
    return [dspex.Example(question=f"{prefix}{i}", answer=f"{prefix}{i}".upper()).with_inputs("question")
            for i in range(n)]


def exact(example, pred, trace=None) -> bool:
    return pred.answer == example.answer


@pytest.fixture
def sim():
    with ProviderServer(answer=answer, api_key=KEY) as server:
        yield server


def runtime_lm(server, tmp_path, log_level):
    """A local runtime and the task LM on ``server`` (what the ``lm`` fixtures yield)."""
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=log_level):
        yield dspex.LM("openai/task", api_key=KEY, base_url=server.base_url())


@pytest.fixture
def lm(sim, tmp_path):
    yield from runtime_lm(sim, tmp_path, None)


# --- the instruction-sensitive task (MIPROv2, GEPA): dspex.testing.instruction_task -----------------

def task_answer(req) -> str:
    return instruction_task.answer_text(req.system, req.messages)


def task_data(n: int, prefix: str) -> list[dspex.Example]:
    return [dspex.Example(**row).with_inputs("question") for row in instruction_task.rows(n, prefix)]


def feedback_metric(example, pred, trace=None):
    score, feedback = instruction_task.score_and_feedback(example.answer, pred.answer)
    return dspex.Prediction(score=score, feedback=feedback)


@pytest.fixture
def task_sim():
    with ProviderServer(answer=task_answer, api_key=KEY) as server:
        yield server


@pytest.fixture
def task_lm(task_sim, tmp_path):
    yield from runtime_lm(task_sim, tmp_path, "warning")
