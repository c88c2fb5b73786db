"""kill -9 of a real compiling process, then resume: COPRO, SIMBA, InferRules and BootstrapFewShotWithOptuna
(issue 23: every optimizer is journaled and resumable to the identical program after kill -9).

Each case runs its optimizer's own simulated task and small settings (those of its test file) once
uninterrupted, in-process, with a run_dir; then, for each drawn kill point, it starts the same compile in a
subprocess on a fresh run_dir, SIGKILLs that process (by its pid) once the simulator has seen that many
requests or the journal holds that many lines, and resumes in-process on the same run_dir. The resumed
program is the uninterrupted one (``dump_state()``: instructions, prefixes, demos) with the same report
(score, candidates) and the same journal, and journaled work is not asked again: the killed run's requests
and the resumed run's add up to the uninterrupted run's, plus the one request that was in flight at the
kill: an evaluation whose per-row entries the kill split resumes under its own name, so its rows journal
answers what was answered.

One request at a time (``max_concurrency=1, parallel_trials=1``), so the order of the requests, and the
count, are deterministic."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import dspex
from dspex.testing import ProviderServer

from . import test_copro, test_infer_rules, test_optuna_fewshot, test_simba
from .conftest import KEY, data, task_data

ROOT = str(Path(__file__).resolve().parents[3])
JOB = {"max_concurrency": 1, "parallel_trials": 1}


class Counter:
    """The InferRules rule writer's request count (its answer alternates with it: a model that is not
    deterministic), settable, so a resumed compile's first rule request gets the answer the uninterrupted
    run's request for that candidate got: as if the writer were deterministic per candidate."""

    def __init__(self) -> None:
        self.value, self._lock = 0, threading.Lock()

    def __iter__(self) -> "Counter":
        return self

    def __next__(self) -> int:
        with self._lock:
            self.value += 1
            return self.value - 1


def task_lm(base_url: str, model: str = "task") -> dspex.LM:
    return dspex.LM(f"openai/{model}", api_key=KEY, base_url=base_url, cache=False)


def copro(base_url: str, run_dir: str) -> dspex.Module:
    student = dspex.Predict("question -> answer", lm=task_lm(base_url))
    return test_copro.copro().compile(student, trainset=task_data(8, "t"), run_dir=run_dir, **JOB)


def simba(base_url: str, run_dir: str) -> dspex.Module:
    student = dspex.Predict("question -> answer", lm=task_lm(base_url))
    optimizer = test_simba.simba(task_lm(base_url, "teacher"))
    return optimizer.compile(student, trainset=test_simba.data(8), seed=1, run_dir=run_dir, **JOB)


def infer_rules(base_url: str, run_dir: str) -> dspex.Module:
    student = dspex.Predict("question -> answer", lm=task_lm(base_url))
    return test_infer_rules.infer().compile(student, trainset=task_data(8, "t"), valset=task_data(6, "v"),
                                            run_dir=run_dir, **JOB)


def optuna(base_url: str, run_dir: str) -> dspex.Module:
    student = dspex.Predict("question -> answer", lm=task_lm(base_url))
    return test_optuna_fewshot.optuna().compile(student, max_demos=2, trainset=data(12, "t"), valset=data(6, "v"),
                                                run_dir=run_dir, **JOB)


COMPILES = {"copro": copro, "simba": simba, "infer_rules": infer_rules, "optuna": optuna}


def answers(name: str, counter: Counter):
    return {"copro": test_copro.proposing, "simba": test_simba.answering,
            "infer_rules": test_infer_rules.writing_rules(counter),
            "optuna": test_optuna_fewshot.answer}[name]


def outcome(compiled: dspex.Module) -> dict:
    """What must come out the same, JSON-able (so a subprocess's compile compares too)."""
    report = compiled.compile_report
    return json.loads(json.dumps({
        "state": compiled.dump_state(), "score": report.score, "baseline": report.baseline_score,
        "stopped": report.stopped, "metric_calls": report.metric_calls,
        "candidates": [dataclasses.asdict(c) for c in report.candidates]}))


def compile_here(name: str, sim: ProviderServer, directory: Path) -> dict:
    with dspex.runtime("local", cache_dir=directory / "cache", log_level="error"):
        return outcome(COMPILES[name](sim.base_url(), str(directory / "run")))


RUNNER = textwrap.dedent("""
    import sys, json
    sys.path.insert(0, sys.argv[1])
    import dspex
    from tests.dspex.teleprompt.test_kill_resume import COMPILES, outcome
    name, base_url, directory = json.loads(sys.stdin.readline())
    with dspex.runtime("local", cache_dir=directory + "/cache", log_level="error"):
        print(json.dumps(outcome(COMPILES[name](base_url, directory + "/run"))))
""")


class Compiler:
    """A subprocess that imports dspex and the cases at once, then compiles the case :meth:`go` names (so
    its start-up overlaps the test's other work). In its own session: :meth:`stop` kills it by its pid,
    then its group (by the same id), in case it started anything."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, ROOT], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)

    def go(self, name: str, sim: ProviderServer, directory: Path) -> None:
        self.proc.stdin.write(json.dumps([name, sim.base_url(), str(directory)]) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        """kill -9 of the compiling process, by its pid."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> str:
        """Stopped, whatever happened; its stderr."""
        self.kill()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.proc.communicate(timeout=30)[1]


def journal_lines(run_dir: Path) -> list[dict]:
    """The journal's whole lines (a torn last line, as a kill leaves, is not one)."""
    path = run_dir / "journal.jsonl"
    if not path.exists():
        return []
    lines = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            lines.append(json.loads(line))
        except ValueError:
            break
    return lines


def without_lm_calls(value):
    """``value`` without its ``lm_calls``: a candidate's calls (InferRules, random search: its evaluation's
    ``result.usage.requests``) count only the requests of the run that finished its evaluation, so a
    candidate whose evaluation the kill cut short says fewer after the resume (its journaled rows are not
    asked again); the programs and scores are the same."""
    if isinstance(value, dict):
        return {k: without_lm_calls(v) for k, v in value.items() if k != "lm_calls"}
    if isinstance(value, list):
        return [without_lm_calls(v) for v in value]
    return value


def steps(run_dir: Path) -> list[str]:
    """The journal's steps, in any order (the header included), each once."""
    return sorted(json.dumps(without_lm_calls(line), sort_keys=True) for line in journal_lines(run_dir))


def watching(answer, run_dir: Path, lengths: list[int]):
    """``answer``, noting the journal at ``run_dir``'s length (whole lines) as each request arrives."""

    def answering(req):
        lengths.append(len(journal_lines(run_dir)))
        return answer(req)

    return answering


def kill_points(name: str, lengths: list[int]) -> list[tuple[str, int]]:
    """Two drawn kill points in the uninterrupted run (``lengths``: its journal's length as each of its
    requests arrived): an early one, after 10-60% of its requests, and a later one, once its journal holds
    one of the lengths it had at 50-90% of them, longer than at the early one (so at least a tenth of the
    requests remain after it: a later one could land in a stretch the compile writes without asking
    anything, to its end, before the kill does)."""
    rng = random.Random(f"kill-resume:{name}")
    total = len(lengths)
    early = rng.randint(max(1, total // 10), total * 6 // 10)
    later = sorted({n for n in lengths[total // 2:total * 9 // 10] if n > lengths[early - 1]})
    return [("requests", early), ("lines", rng.choice(later))]


def killed_at(compiler: Compiler, name: str, sim: ProviderServer, directory: Path, by: str, at: int) -> int:
    """Start ``compiler``'s compile on ``directory`` and kill -9 it once the simulator has seen ``at``
    requests (``by="requests"``) or its journal holds ``at`` lines; the requests it made."""
    sim.clear_log()
    compiler.go(name, sim, directory)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and compiler.proc.poll() is None:
        if (len(sim.log) if by == "requests" else len(journal_lines(directory / "run"))) >= at:
            break
        time.sleep(0.002)
    assert compiler.proc.poll() is None, f"the compile ended before the kill: {compiler.stop()[-2000:]}"
    compiler.kill()
    return len(sim.log)


def asked_for(logged) -> str:
    """What a logged request asked: the question it was about, else the fields the answer was to hold."""
    text = logged.body["messages"][-1]["content"]
    question = re.search(r"\[\[ ## question ## \]\]\n([^\n]*)", text)
    return f"{logged.body['model']}: {question.group(1)}" if question else \
        f"{logged.body['model']}: " + ", ".join(re.findall(r"`\[\[ ## (\w+) ## \]\]`", text)[:3])


# Requests a resume asks again beyond the one in flight at the kill, with these settings (the most any cut
# of the journal between two entries gives; measured by cutting it after every line): the rows of an
# evaluation whose per-row entries the kill split (see test_a_kill_between_the_entries_of_one_evaluation_...).
REASKED = {"copro": 0, "infer_rules": 0, "optuna": 0, "simba": 0}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMPILES))
def test_kill_9_of_the_compiling_process_then_resume_gives_the_identical_program(tmp_path, name):
    counter, compilers, lengths = Counter(), [Compiler()], []  # its start-up overlaps the uninterrupted run
    try:
        with ProviderServer(answer=watching(answers(name, counter), tmp_path / "clean" / "run", lengths),
                            api_key=KEY) as sim:
            expected = compile_here(name, sim, tmp_path / "clean")
            uninterrupted, lines = len(sim.log), len(journal_lines(tmp_path / "clean" / "run"))
            assert expected["stopped"] == "done" and expected["score"] is not None and len(lengths) == uninterrupted
            points = kill_points(name, lengths)
            for n, (by, at) in enumerate(points):
                directory, compiler = tmp_path / f"killed-{n}", compilers[-1]
                if n + 1 < len(points):
                    compilers.append(Compiler())  # the next one starts up meanwhile
                counter.value = 0
                first_part = killed_at(compiler, name, sim, directory, by, at)
                done = journal_lines(directory / "run")
                assert len(done) < lines, (by, at)  # it really was cut short
                # the rule writer answers each candidate's request as it did uninterrupted (see Counter)
                counter.value = sum(1 for e in done if e["kind"] == "proposal")  # InferRules: RuleInduction
                sim.clear_log()
                resumed = compile_here(name, sim, directory)
                assert resumed["state"] == expected["state"], (by, at)  # the identical program
                assert without_lm_calls(resumed) == without_lm_calls(expected), (by, at)  # the same report
                assert steps(directory / "run") == steps(tmp_path / "clean" / "run"), (by, at)  # each step once
                # journaled work is not asked again: the request in flight at the kill is asked twice (one
                # at a time: one request), and the known re-asks (REASKED)
                assert first_part + len(sim.log) <= uninterrupted + 1 + REASKED[name], \
                    (by, at, first_part, len(sim.log), uninterrupted)
    finally:
        for compiler in compilers:
            compiler.stop()


def bootstrap_cut(journal: Path) -> int:
    """The length of the journal cut right after the first example entry of a bootstrap evaluation of two
    or more examples (as a kill between that evaluation's entries leaves it)."""
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    for n, entry in enumerate(lines):
        if entry["kind"] == "bootstrap_batch" and len(entry["examples"]) >= 2:
            return next(m for m in range(n + 1, len(lines)) if lines[m]["kind"] == "bootstrap") + 1
    raise AssertionError("no bootstrap evaluation of two examples in the journal")


def resume_after_cut(tmp_path, name, cut_at) -> tuple[dict, dict, list]:
    counter = Counter()
    with ProviderServer(answer=answers(name, counter), api_key=KEY) as sim:
        expected = compile_here(name, sim, tmp_path / "clean")
        (tmp_path / "cut").mkdir()
        shutil.copytree(tmp_path / "clean" / "run", tmp_path / "cut" / "run")
        journal = tmp_path / "cut" / "run" / "journal.jsonl"
        cut = cut_at(journal) if callable(cut_at) else cut_at
        kept = journal.read_text().splitlines(keepends=True)[:cut]
        journal.write_text("".join(kept))
        counter.value = sum(1 for line in kept if json.loads(line)["kind"] == "proposal")
        sim.clear_log()
        resumed = compile_here(name, sim, tmp_path / "cut")
        return expected, resumed, [asked_for(r) for r in sim.log]


@pytest.mark.parametrize("name, unjournaled", [
    ("optuna", 0),  # nothing after the cut is unjournaled: every trace and score comes back
    ("infer_rules", 3),  # then the 3 candidates' rules are asked (they have no rows journal)
])
def test_a_kill_inside_a_bootstrap_evaluation_resumes_that_evaluation_and_asks_only_what_was_not_journaled(
        tmp_path, name, unjournaled):
    """Deterministic, in-process: every rows journal of the uninterrupted run is there and whole, the compile
    journal ends inside one bootstrap evaluation's entries (its BootstrapBatch journaled, one of its examples'
    traces too): the resume runs that evaluation again under its name, so its answered rows come from its rows
    journal, and asks only what was journaled nowhere."""
    expected, resumed, asked = resume_after_cut(tmp_path, name, bootstrap_cut)
    assert resumed["state"] == expected["state"]  # the identical program, as it is
    assert len(asked) == unjournaled, asked


def test_a_kill_between_the_entries_of_one_simba_evaluation_asks_only_what_was_not_journaled(tmp_path):
    """As above for SIMBA: the journal ends after 1 of the last sample's 4 trajectories of step 0; only step 0's
    2 rules should be asked."""
    expected, resumed, asked = resume_after_cut(tmp_path, "simba", 11)
    assert resumed["state"] == expected["state"]
    assert len(asked) == 2, asked
