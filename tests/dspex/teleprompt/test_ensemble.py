"""Ensemble: members run at once, a reduce_fn combines them, deterministic picks follow the inputs."""

from __future__ import annotations

import threading
import time

import pytest

import dspex
from dspex.errors import ConfigError
from dspex.teleprompt import Ensemble


class Echo(dspex.Module):
    def __init__(self, tag: int, delay: float = 0.0) -> None:
        super().__init__()
        self.tag, self.delay = tag, delay

    def forward(self, question: str = "") -> dspex.Prediction:
        time.sleep(self.delay)
        return dspex.Prediction(answer=f"{self.tag}", thread=threading.get_ident())


def test_members_run_at_once_and_keep_their_order():
    programs = [Echo(i, delay=0.3) for i in range(5)]
    ensembled = Ensemble().compile(programs)
    started = time.monotonic()
    outputs = ensembled(question="q")
    assert time.monotonic() - started < 1.0  # five 0.3 s members at once, not 1.5 s one after another
    assert [o.answer for o in outputs] == ["0", "1", "2", "3", "4"]
    assert len({o.thread for o in outputs}) == 5


def test_majority_reduces_predictions():
    programs = [Echo(1), Echo(2), Echo(1)]
    best = Ensemble(reduce_fn=lambda outputs: dspex.majority(outputs, field="answer")).compile(programs)(question="q")
    assert best.answer == "1"


def test_deterministic_picks_follow_the_inputs():
    programs = [Echo(i) for i in range(10)]
    ensembled = Ensemble(size=3, deterministic=True).compile(programs)
    first = [o.answer for o in ensembled(question="a")]
    assert all([o.answer for o in ensembled(question="a")] == first for _ in range(5))
    picks = {tuple(o.answer for o in ensembled(question=f"q{i}")) for i in range(20)}
    assert len(picks) > 1  # other inputs meet other members


def test_random_size_draws_members():
    ensembled = Ensemble(size=2).compile([Echo(i) for i in range(6)])
    seen = {o.answer for _ in range(30) for o in ensembled(question="q")}
    assert len(seen) > 2


def test_a_member_error_raises_to_the_caller():
    class Broken(dspex.Module):
        def forward(self, question: str = "") -> None:
            raise ValueError("member failed")

    with pytest.raises(ValueError, match="member failed"):
        Ensemble().compile([Echo(0), Broken()])(question="q")


def test_members_see_the_callers_context():
    class ReadsContext(dspex.Module):
        def forward(self, question: str = "") -> object:
            return dspex.settings.max_errors

    with dspex.context(max_errors=7):
        assert Ensemble().compile([ReadsContext(), ReadsContext()])(question="q") == [7, 7]


@pytest.mark.parametrize("kwargs, programs", [({"size": 0}, 3), ({"size": 4}, 3), ({"reduce_fn": "majority"}, 3),
                                              ({}, 0)])
def test_bad_settings_are_config_errors(kwargs, programs):
    with pytest.raises(ConfigError):
        Ensemble(**kwargs).compile([Echo(i) for i in range(programs)])


def test_the_members_are_the_programs_predictors():
    members = [dspex.Predict("question -> answer") for _ in range(3)]
    ensembled = Ensemble().compile(members)
    assert [p for _, p in ensembled.named_predictors()] == members
