"""The optimizer interface every teleprompter shares (DSPy's ``Teleprompter``) and its compile skeleton.

An optimizer is one file: a :class:`Teleprompter` whose ``__init__`` checks and keeps its settings and
whose ``compile`` reads::

    def compile(self, student, *, trainset, teacher=None, valset=None, **job_options):
        student = check_student(student)                        # dspex.teleprompt.validate
        trainset = check_trainset(trainset, student)
        job = self.job({"student": structure(student), "settings": ...}, **job_options)
        best, program = None, student.reset_copy()
        with job:                          # a budget, Ctrl-C or a refused journal write ends the block
            ...                            # job.evaluate / job.charged / job.record / job.journaled
        return job.report(program, best=best, baseline=..., candidates=...)

``job.stopped`` says what ended the block ("done", "budget", "cancelled", "journal"); ``job.report``
attaches ``compile_report`` and returns the program (or raises the JournalWriteError carrying it). The
steps the optimizer journals are entries of :mod:`dspex.journal.format`, named in ``journal_entries``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, Mapping, Sequence

from ..journal import Entry
from ..primitives import Example
from ..programs import Module
from ..utils.callback import with_callbacks
from ..utils.optional import need
from .job import CompileJob, fingerprint


class Teleprompter:
    """Compiles a student program from data (and a metric): ``compile(student, *, trainset, teacher=None,
    valset=None)`` returns a new program, never mutating the student or the teacher."""

    journal_entries: ClassVar[tuple[type[Entry], ...]] = ()  # the kinds of step its journal holds
    seed: int = 0  # the journal's seed (optimizers that draw at random take it as a setting)
    _callback_kind: ClassVar[str] = "compile"  # compile fires the compile hooks (dspex.utils.callback)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's own ``compile`` fires the callbacks (a span per compile under dspex.telemetry)."""
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("compile")
        if method is not None and not getattr(method, "fires_callbacks", False):
            cls.compile = with_callbacks(method)  # type: ignore[method-assign]

    def compile(self, student: Module, *, trainset: Sequence[Example], teacher: Module | None = None,
                valset: Sequence[Example] | None = None, **job_options: Any) -> Module:
        """The compiled program. ``job_options`` are the compile job's: ``run_dir`` (journal, resume),
        ``budget_usd`` / ``budget_tokens``, ``max_concurrency``, ``workers``, ``hosts``, ``parallel_trials``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement compile()")

    def get_params(self) -> dict[str, Any]:
        """The optimizer's settings by name (DSPy: its attributes)."""
        return dict(vars(self))

    def job(self, parts: Mapping[str, Any], **job_options: Any) -> CompileJob:
        """This compile's job, its journal's header naming this optimizer, its seed and a digest of each
        of ``parts`` (what a resumed journal must match: the student's structure, the data, the settings)."""
        return CompileJob(type(self).__name__, self.seed, fingerprint(**parts), entries=self.journal_entries,
                          **job_options)


def need_optuna(optimizer: str) -> ModuleType:
    """The ``optuna`` module (the ``optuna`` extra), or OptionalDependencyMissing naming it: asked for in the
    optimizer's constructor, so a missing extra is said before any LM call is spent."""
    return need("optuna", "optuna", f"{optimizer}'s Bayesian search (seeded TPE)")


__all__ = ["Teleprompter", "need_optuna"]
