"""GEPA's Pareto helpers, alone: fronts per example, dominance, wins, a seeded weighted draw."""

from __future__ import annotations

import random

from hypothesis import given, strategies as st

from dspex.teleprompt.pareto import dominates, front_wins, fronts, select


def test_each_example_s_front_is_every_candidate_with_its_top_score():
    scores = [[1.0, 0.0, 0.5], [1.0, 1.0, 0.0], [0.0, 1.0, 0.5]]
    assert fronts(scores) == [{0, 1}, {1, 2}, {0, 2}]
    assert fronts([]) == []


def test_dominance_needs_as_good_everywhere_and_better_somewhere():
    assert dominates([1, 1], [1, 0]) and not dominates([1, 0], [1, 0]) and not dominates([1, 0], [0, 1])


def test_a_dominated_candidate_wins_nothing_even_when_it_ties_on_a_front():
    # candidate 1 ties 0 on example 0 but 0 is better on example 1: 1 is dropped; 2 wins example 2 alone
    scores = [[1.0, 1.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]
    assert front_wins(scores) == {0: 2, 2: 1}


def test_a_candidate_on_no_front_is_never_drawn():
    scores = [[1.0, 1.0], [0.5, 0.5], [0.0, 1.0]]
    assert front_wins(scores) == {0: 2}  # 2 ties on example 1 but 0 dominates it; 1 tops nothing
    assert select(front_wins(scores), random.Random(0)) == 0


def test_the_draw_follows_the_wins_and_the_seed():
    wins = {0: 1, 3: 3}
    draws = [select(wins, random.Random(seed)) for seed in range(400)]
    assert set(draws) == {0, 3} and 0.65 < draws.count(3) / len(draws) < 0.85
    assert draws == [select(wins, random.Random(seed)) for seed in range(400)]  # a function of the seed


@given(st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=3, max_size=3), min_size=1, max_size=6))
def test_winners_are_undominated_and_every_example_has_one(scores):
    wins = front_wins(scores)
    assert wins and all(not any(dominates(scores[d], scores[c]) for d in wins if d != c) for c in wins)
    per_example = fronts(scores)
    assert all(front & set(wins) for front in per_example)  # a dominated top candidate has a top undominated one
    assert all(wins[c] == sum(c in front for front in per_example) for c in wins)
