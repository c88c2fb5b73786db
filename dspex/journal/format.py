"""The on-disk format of every journal: its version, the kinds of entry and each entry's fields.

Every entry's fields are declared here, beside :data:`FORMAT`, so a change to any of them is seen to be a
format change: bump ``FORMAT``, go on reading the older formats, and add their journals to
``tests/dspex/journals``. An optimizer that records a new kind of step adds its kind and its entry here.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Callable, ClassVar, Mapping, TypeVar

FORMAT = 2  # the journal format this release writes (and the newest it reads); 1: the release before it
E = TypeVar("E", bound="Entry")


class JournalType(str, Enum):
    """What a journal records (its header's ``journal``)."""

    EVALUATION = "evaluation"  # Evaluate's rows (``journal=``; a compile's ``run_dir/rows-*.jsonl``)
    COMPILE = "compile"  # a compile's steps (``run_dir/journal.jsonl``)


class EntryKind(str, Enum):
    """Every kind of line a journal holds, with who writes it (its ``"kind"``)."""

    HEADER = "header"  # the first line: the journal's type and format (a compile's: what it must match)
    ROW = "row"  # Evaluate: one example finished (format 1 rows carry no kind)
    BOOTSTRAP = "bootstrap"  # BootstrapFewShot (and the optimizers built on it): one teacher trace tried
    BOOTSTRAP_BATCH = "bootstrap_batch"  # BootstrapFewShot: the examples one evaluation of the teacher runs
    CANDIDATE = "candidate"  # random search, COPRO: a candidate program scored; GEPA: a candidate added to the pool;
    # InferRules: a candidate's rules scored; BootstrapFewShotWithOptuna: one trial scored on the valset
    SUMMARY = "summary"  # MIPROv2: the proposer's summary of the data
    PROPOSAL = "proposal"  # MIPROv2, COPRO: an instruction proposed; GEPA: what became of a planned proposal;
    # SIMBA: a candidate made by a strategy (a demo or a rule); InferRules: the rules induced for a predictor
    TRIAL = "trial"  # MIPROv2: one sampler trial's minibatch score; SIMBA: a new candidate's mini-batch scores
    FULL = "full"  # MIPROv2: one configuration's score on the whole valset; SIMBA: a winner's on the trainset
    REFLECTION = "reflection"  # GEPA: the instruction one reflection wrote
    BATCH = "batch"  # SIMBA: the mini-batch a step drew and the programs sampled on it
    TRAJECTORY = "trajectory"  # SIMBA: one sampled program's run on one example of a step's mini-batch

    @property
    def scores_a_program(self) -> bool:
        """Its entries carry a program's ``score`` on the whole valset (what "the best so far" is made of)."""
        return self in (EntryKind.CANDIDATE, EntryKind.FULL)


# --- entries ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One line of a journal: a frozen value of JSON types whose fields are checked against their
    annotations when it is made (so a reader gets what the writer wrote, or JournalCorrupt)."""

    kind: ClassVar[EntryKind]

    def __post_init__(self) -> None:
        for name, conforms, hint in _checks(type(self)):
            value = getattr(self, name)
            if not conforms(value):
                raise TypeError(f"{type(self).__name__}.{name} must be {_show(hint)}, got {value!r:.80}")

    def to_json(self) -> dict:
        return {"kind": self.kind.value, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_json(cls: type[E], data: Mapping[str, Any]) -> E:
        """The entry a line holds (fields it does not declare are ignored; a missing one is a TypeError)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Header(Entry):
    """The first line. A compile's names the optimizer, its seed and the ``fingerprint`` (digests of the
    student, data and settings) a resumed compile must match."""

    kind: ClassVar[EntryKind] = EntryKind.HEADER
    journal: str  # a JournalType's value
    format: int = FORMAT
    optimizer: str | None = None
    seed: int | None = None
    fingerprint: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        JournalType(self.journal)  # ValueError for a type this release does not know

    def to_json(self) -> dict:
        out = {"kind": self.kind.value, "format": self.format, "journal": self.journal}
        if self.journal == JournalType.COMPILE:
            out.update(optimizer=self.optimizer, seed=self.seed, fingerprint=dict(self.fingerprint))
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Header":
        if "format" not in data:  # format 1: only compiles had a header, its fingerprint inline
            rest = {k: v for k, v in data.items() if k not in ("kind", "optimizer", "seed")}
            return cls(JournalType.COMPILE.value, 1, data["optimizer"], data["seed"], rest)
        return super().from_json(data)

    def differences(self, other: "Header") -> list[str]:
        """What differs between two compiles' headers (optimizer, seed, a fingerprint part), by name."""
        names = ["optimizer", "seed", *dict.fromkeys([*self.fingerprint, *other.fingerprint])]
        mine = {"optimizer": self.optimizer, "seed": self.seed, **self.fingerprint}
        theirs = {"optimizer": other.optimizer, "seed": other.seed, **other.fingerprint}
        return [n for n in names if mine.get(n) != theirs.get(n)]


@dataclass(frozen=True)
class Row(Entry):
    """Evaluate: one finished example (``EvalRow.to_json``: ``error`` is ``{"type", "message"}``)."""

    kind: ClassVar[EntryKind] = EntryKind.ROW
    index: int
    score: float
    example: dict = field(default_factory=dict)
    prediction: dict | None = None
    usage: list[int] = field(default_factory=lambda: [0, 0])
    cost: float = 0.0
    error: dict | None = None
    attempts: int = 1
    worker: str = ""
    feedback: str | None = None
    trace: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class BootstrapTrace(Entry):
    """BootstrapFewShot: train example ``index`` run by the teacher in ``round``; ``steps`` are its trace
    when the metric passed it (``ok``). ``tag`` names the bootstrap (random search: ``candidate-N``)."""

    kind: ClassVar[EntryKind] = EntryKind.BOOTSTRAP
    tag: str
    index: int
    round: int
    ok: bool
    steps: list[dict] | None
    error: str | None


@dataclass(frozen=True)
class BootstrapBatch(Entry):
    """BootstrapFewShot: the train ``examples`` one evaluation of the teacher runs in ``round``, journaled
    before it runs: a kill between its examples' entries resumes that very evaluation (its rows journal
    answers what was answered) instead of planning another."""

    kind: ClassVar[EntryKind] = EntryKind.BOOTSTRAP_BATCH
    tag: str
    round: int
    examples: list[int]


@dataclass(frozen=True)
class ScoredCandidate(Entry):
    """Random search: candidate ``id`` scored on the valset (``complete``: on every example)."""

    kind: ClassVar[EntryKind] = EntryKind.CANDIDATE
    id: int
    description: str
    score: float
    lm_calls: int
    complete: bool


@dataclass(frozen=True)
class DataSummary(Entry):
    """MIPROv2: the proposer's observations about the data."""

    kind: ClassVar[EntryKind] = EntryKind.SUMMARY
    text: str


@dataclass(frozen=True)
class InstructionProposal(Entry):
    """MIPROv2: proposal ``index`` for ``predictor`` (``instruction`` None: rejected, ``error`` says why)."""

    kind: ClassVar[EntryKind] = EntryKind.PROPOSAL
    predictor: str
    index: int
    tip: str
    instruction: str | None
    error: str | None


@dataclass(frozen=True)
class Trial(Entry):
    """MIPROv2: trial ``trial`` chose ``config`` (an (instruction, demo set) pair per predictor) and scored
    ``score`` on the valset indices ``minibatch``."""

    kind: ClassVar[EntryKind] = EntryKind.TRIAL
    trial: int
    config: list[list[int]]
    minibatch: list[int]
    score: float


@dataclass(frozen=True)
class FullScore(Entry):
    """MIPROv2: ``config`` scored on the whole valset."""

    kind: ClassVar[EntryKind] = EntryKind.FULL
    config: list[list[int]]
    score: float


@dataclass(frozen=True)
class Reflection(Entry):
    """GEPA: the reflection of proposal (``round``, ``slot``) on ``component`` of candidate ``parent``
    (``instruction`` None: rejected, ``error`` says why)."""

    kind: ClassVar[EntryKind] = EntryKind.REFLECTION
    round: int
    slot: int
    parent: int
    component: str
    instruction: str | None
    error: str | None


@dataclass(frozen=True)
class ProposalOutcome(Entry):
    """GEPA: what became of proposal (``round``, ``slot``), a ``"reflect"`` or a ``"merge"``."""

    kind: ClassVar[EntryKind] = EntryKind.PROPOSAL
    round: int
    slot: int
    proposal: str
    parents: list[int]
    component: str
    note: str


@dataclass(frozen=True)
class PoolCandidate(Entry):
    """GEPA: candidate ``id`` (an instruction per predictor) joined the pool; ``score``: its valset mean."""

    kind: ClassVar[EntryKind] = EntryKind.CANDIDATE
    id: int
    instructions: dict[str, str]
    parents: list[int]
    origin: str
    score: float


@dataclass(frozen=True)
class CoproProposal(Entry):
    """COPRO: proposal ``slot`` of ``round`` for ``predictor``, an instruction and the prefix of its last
    output field (``instruction`` None: rejected, ``error`` says why)."""

    kind: ClassVar[EntryKind] = EntryKind.PROPOSAL
    round: int
    predictor: str
    slot: int
    instruction: str | None
    prefix: str | None
    error: str | None


@dataclass(frozen=True)
class CoproScore(Entry):
    """COPRO: candidate ``slot`` of ``round`` for ``predictor`` scored ``score`` (the trainset mean) as the
    program ``config`` (each predictor's [instruction, prefix])."""

    kind: ClassVar[EntryKind] = EntryKind.CANDIDATE
    round: int
    predictor: str
    slot: int
    config: dict[str, list[str]]
    score: float


@dataclass(frozen=True)
class SimbaBatch(Entry):
    """SIMBA: step ``step`` drew the train indices ``batch``; ``programs[m][i]`` is the pool program that
    sample ``m`` ran on ``batch[i]``."""

    kind: ClassVar[EntryKind] = EntryKind.BATCH
    step: int
    batch: list[int]
    programs: list[list[int]]


@dataclass(frozen=True)
class SimbaTrajectory(Entry):
    """SIMBA: sample ``sample`` of step ``step`` ran pool program ``program`` on train example ``example``:
    its predictor calls (``trace``), outputs, the metric's ``score`` and ``feedback`` (``error``: why the
    run failed, scored 0)."""

    kind: ClassVar[EntryKind] = EntryKind.TRAJECTORY
    step: int
    sample: int
    example: int
    program: int
    score: float
    outputs: dict | None
    trace: list[dict]
    feedback: str | None
    error: str | None


@dataclass(frozen=True)
class SimbaProposal(Entry):
    """SIMBA: candidate ``slot`` of step ``step``, made from pool program ``source`` for the bucket of train
    example ``example`` by ``strategy`` ("demo" or "rule") after dropping the demos at ``dropped``;
    ``advice``: the rule the prompt model wrote per predictor; ``built`` False: the strategy failed and no
    candidate came of it (``note`` says why, or what the strategy did)."""

    kind: ClassVar[EntryKind] = EntryKind.PROPOSAL
    step: int
    slot: int
    example: int
    source: int
    strategy: str
    dropped: list[int]
    advice: dict[str, str] | None
    built: bool
    note: str


@dataclass(frozen=True)
class SimbaScore(Entry):
    """SIMBA: pool program ``program`` (``key``: a digest of its instructions and demos), new in step
    ``step``, scored ``scores`` on the step's mini-batch."""

    kind: ClassVar[EntryKind] = EntryKind.TRIAL
    step: int
    program: int
    key: str
    scores: list[float]


@dataclass(frozen=True)
class SimbaFinal(Entry):
    """SIMBA: pool program ``program`` (``key``: its digest), a step's winner, scored ``score`` (the mean)
    on the whole trainset."""

    kind: ClassVar[EntryKind] = EntryKind.FULL
    program: int
    key: str
    score: float


@dataclass(frozen=True)
class RuleInduction(Entry):
    """InferRules: the rules the LM induced for ``predictor`` in candidate ``candidate`` from ``examples``
    examples (``rules`` None: none could be used, ``error`` says why)."""

    kind: ClassVar[EntryKind] = EntryKind.PROPOSAL
    candidate: int
    predictor: str
    rules: str | None
    examples: int
    error: str | None


@dataclass(frozen=True)
class OptunaTrial(Entry):
    """BootstrapFewShotWithOptuna: sampler trial ``trial`` gave each predictor the demos of demo set
    ``demo_sets[name]`` and scored ``score`` (the mean) on the whole valset."""

    kind: ClassVar[EntryKind] = EntryKind.CANDIDATE
    trial: int
    demo_sets: dict[str, int]
    score: float


@dataclass(frozen=True)
class Step:
    """A line of a kind the reader named no class for (the dashboard reads any journal): its kind and
    fields as written. A step that scores a program has a finite ``score``."""

    kind: EntryKind
    fields: dict

    def __post_init__(self) -> None:
        if self.kind.scores_a_program and not finite_number(self.fields.get("score")):
            raise ValueError(f"a {self.kind.value} entry's score must be a finite number, got "
                             f"{self.fields.get('score')!r:.80}")

    def to_json(self) -> dict:
        return {"kind": self.kind.value, **self.fields}


def _checks(cls: type) -> list[tuple[str, Callable[[Any], bool], Any]]:
    """Each field of an entry class with the check of its annotation (made once per class)."""
    checks = _CHECKS.get(cls)
    if checks is None:
        hints = typing.get_type_hints(cls)
        checks = _CHECKS[cls] = [(f.name, _checker(hints[f.name]), hints[f.name]) for f in fields(cls)]
    return checks


_CHECKS: dict[type, list] = {}


def _checker(hint: Any) -> Callable[[Any], bool]:
    """Whether a value is of the JSON type ``hint`` names: int, float (finite), str, bool, None, list[...],
    dict[str, ...] and unions of them."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [_checker(a) for a in args]
        return lambda v: any(ok(v) for ok in options)
    if hint is type(None):
        return lambda v: v is None
    if hint is bool:
        return lambda v: isinstance(v, bool)
    if hint is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if hint is float:
        return finite_number
    if hint is str:
        return lambda v: isinstance(v, str)
    if hint is list or origin is list:
        item = _checker(args[0]) if args else None
        return lambda v: isinstance(v, list) and (item is None or all(item(x) for x in v))
    if hint is dict or origin is dict:
        value = _checker(args[1]) if args else None
        return lambda v: isinstance(v, dict) and (value is None or all(value(x) for x in v.values()))
    if hint is Any:
        return lambda v: True
    raise TypeError(f"an entry field's annotation must be a JSON type, not {hint!r}")


def _show(hint: Any) -> str:
    # a plain class by its name; a generic alias as written (on Python 3.10 ``list[int]`` is also a ``type``)
    plain = isinstance(hint, type) and typing.get_origin(hint) is None
    return (hint.__name__ if plain else str(hint)).replace("float", "a finite float")


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["FORMAT", "JournalType", "EntryKind", "Entry", "Header", "Row", "BootstrapTrace", "BootstrapBatch", "ScoredCandidate",
           "DataSummary", "InstructionProposal", "Trial", "FullScore", "Reflection", "ProposalOutcome", "PoolCandidate",
           "CoproProposal", "CoproScore", "SimbaBatch", "SimbaTrajectory", "SimbaProposal", "SimbaScore", "SimbaFinal",
           "RuleInduction", "OptunaTrial", "Step"]
