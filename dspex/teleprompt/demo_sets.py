"""Candidate demo sets as DSPy's random search builds them (BootstrapFewShotWithRandomSearch scores them
as programs; MIPROv2 searches over them beside its instructions).

In order: zero-shot, labeled demos only, an unshuffled bootstrap with the most demos, then ``num_shuffled``
bootstraps of seeded shuffles of the trainset, each with a random number of demos; with ``search_adapters``
the same sets again under the other adapters (see :func:`plan`). The plan is a function of its settings alone; building a bootstrapped
set journals its traces under the set's tag (``candidate-N``), so a resumed compile builds it again
without asking anything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from ..adapters import ADAPTERS
from ..primitives import Example
from ..programs import Module
from .fewshot import BootstrapFewShot, labeled_demos
from .job import CompileJob


@dataclass(frozen=True)
class DemoSet:
    """One planned demo set: ``source`` is "zero-shot", "labeled" or "bootstrap" (of the trainset shuffled
    with seed ``shuffle``, None: in order, keeping up to ``demos`` bootstrapped demos); ``adapter`` names
    an adapter of ``dspex.adapters.ADAPTERS`` (None: the predictor's own)."""

    id: int
    source: str
    adapter: str | None = None
    shuffle: int | None = None
    demos: int = 0

    def describe(self) -> str:
        text = {"zero-shot": "zero-shot", "labeled": "labeled demos only"}.get(self.source)
        if text is None:
            text = (f"bootstrap {self.demos} demos, " + ("unshuffled" if self.shuffle is None
                                                         else f"shuffle seed {self.shuffle}"))
        return text + (f", {self.adapter}" if self.adapter else "")


def plan(seed: int, num_shuffled: int, max_bootstrapped_demos: int, search_adapters: bool = False) -> list[DemoSet]:
    """The demo sets, in order (every random draw from generators seeded with ``seed``). With
    ``search_adapters`` the plan is the single-adapter plan, unchanged and first, then the same sets under the
    other adapters (zero-shot and labeled under each, every bootstrap under one drawn at random): a wider
    search holds every candidate of the narrower one, scored the same, and a tie goes to the earlier, so it
    never picks a program that scores lower on the valset."""
    rng = random.Random(seed)
    items: list[tuple] = [("zero-shot", None, None, 0), ("labeled", None, None, 0),
                          ("bootstrap", None, None, max_bootstrapped_demos)]
    for shuffle in range(num_shuffled):
        rng.choice([None])  # the draw the plan has always made here: the demo counts below stay as they were
        items.append(("bootstrap", None, shuffle, rng.randint(1, max(1, max_bootstrapped_demos))))
    if search_adapters:
        names = list(ADAPTERS)
        widen = random.Random(f"{seed}:adapters")
        variants: list[tuple] = [(source, name, None, 0) for name in names for source in ("zero-shot", "labeled")]
        variants += [(source, widen.choice(names), shuffle, demos)
                     for source, _, shuffle, demos in items if source == "bootstrap"]
        items += variants
    return [DemoSet(i, *item) for i, item in enumerate(items)]


def build(job: CompileJob, booter: BootstrapFewShot, student: Module, teacher: Module | None,
          trainset: Sequence[Example], item: DemoSet) -> Module:
    """The student with ``item``'s demos (labeled ones as many as ``booter.max_labeled_demos``, drawn with
    its seed) and adapter; a bootstrap runs ``booter`` on the job."""
    if item.source == "zero-shot":
        program = student.reset_copy()
    elif item.source == "labeled":
        program = student.reset_copy()
        demos = labeled_demos(trainset, booter.max_labeled_demos, random.Random(booter.seed))
        for predictor in program.predictors():
            predictor.demos = list(demos)
    else:
        order = list(range(len(trainset)))
        if item.shuffle is not None:
            random.Random(item.shuffle).shuffle(order)
        program, _ = booter.compile_in(job, student, list(trainset), teacher, order=order, max_demos=item.demos,
                                       tag=f"candidate-{item.id}")
    if item.adapter:
        for predictor in program.predictors():
            predictor.adapter = ADAPTERS[item.adapter]()
    return program


__all__ = ["DemoSet", "plan", "build"]
