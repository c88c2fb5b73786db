"""GEPA's Pareto helpers, pure: a candidate's scores are one number per validation example.

A candidate is on the front of an example when no candidate scores higher on it. Among the candidates on
some front, those another candidate dominates (at least as good on every example, better on one) are
dropped; each survivor wins the examples whose front it is on, and a parent is drawn with weights in
proportion to those wins (gepa's ``select_program_candidate_from_pareto_front``).
"""

from __future__ import annotations

import random
from typing import Mapping, Sequence

Scores = Sequence[Sequence[float]]  # candidate -> example -> score


def fronts(scores: Scores) -> list[set[int]]:
    """For each example, the candidates with the top score on it."""
    if not scores:
        return []
    out = []
    for e in range(len(scores[0])):
        top = max(s[e] for s in scores)
        out.append({c for c, s in enumerate(scores) if s[e] == top})
    return out


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is at least as good as ``b`` on every example and better on at least one."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def front_wins(scores: Scores) -> dict[int, int]:
    """The candidates on some front that none of the others on a front dominates, each with the number of
    examples it is among the best on."""
    per_example = fronts(scores)
    on_a_front = set().union(*per_example)
    alive = {c for c in on_a_front
             if not any(dominates(scores[d], scores[c]) for d in on_a_front if d != c)}
    return {c: sum(c in front for front in per_example) for c in sorted(alive)}


def select(wins: Mapping[int, int], rng: random.Random) -> int:
    """A candidate drawn from ``wins`` with weights in proportion to its wins (one draw of ``rng``)."""
    ids = sorted(wins)
    return rng.choices(ids, weights=[wins[c] for c in ids])[0]


__all__ = ["fronts", "dominates", "front_wins", "select"]
