"""Random search: DSPy's candidate set, candidates in flight together, journaled and resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import dspex

from ...conftest import wait_until
from .conftest import KEY, data, exact


def search(**options):
    return dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=4, max_bootstrapped_demos=2,
                                                  max_labeled_demos=2, **options)


def test_random_search_finds_a_better_program_and_reports_every_candidate(lm, sim):
    student = dspex.Predict("question -> answer", lm=lm)
    compiled = search().compile(student, trainset=data(12, "t"), valset=data(8, "v"))
    report = compiled.compile_report
    assert report.baseline_score == 50.0 and report.score == 100.0 and report.stopped == "done"
    assert [c.description for c in report.candidates[:3]] == ["zero-shot", "labeled demos only",
                                                              "bootstrap 2 demos, unshuffled"]
    assert len(report.candidates) == 3 + 4
    assert report.lm_calls - report.usage.cache_hits == len(sim.log)  # what was sent: every request counted
    assert student.demos == [] and compiled.demos


def test_search_adapters_makes_the_adapter_part_of_each_candidate(lm):
    compiled = search(search_adapters=True).compile(dspex.Predict("question -> answer", lm=lm),
                                                    trainset=data(8, "t"), valset=data(4, "v"))
    names = [c.description for c in compiled.compile_report.candidates]
    assert {"zero-shot, ChatAdapter", "zero-shot, JSONAdapter", "zero-shot, TextAdapter"} <= set(names)


def test_a_wider_search_holds_the_narrower_one_and_never_picks_a_lower_valset_score(lm):
    from dspex.teleprompt import demo_sets

    for seed in range(5):
        narrow, wide = demo_sets.plan(seed, 6, 3), demo_sets.plan(seed, 6, 3, search_adapters=True)
        assert wide[:len(narrow)] == narrow  # the same sets, the same ids, first
        assert {item.adapter for item in wide[len(narrow):]} <= set(dspex.adapters.ADAPTERS)
    student, train, val = dspex.Predict("question -> answer", lm=lm), data(8, "t"), data(4, "v")
    plain = search().compile(student, trainset=train, valset=val).compile_report
    widened = search(search_adapters=True).compile(student, trainset=train, valset=val).compile_report
    assert widened.score >= plain.score
    assert [c.score for c in widened.candidates[:len(plain.candidates)]] == [c.score for c in plain.candidates]


def test_without_a_valset_candidates_are_scored_on_the_trainset_and_restrict_is_checked():
    with pytest.raises(ValueError, match="restrict"):  # DSPy's: no valset means the trainset; a restrict
        search().compile(dspex.Predict("question -> answer"), trainset=data(4), restrict=[999])  # naming no seed


def test_resume_from_the_journal_asks_nothing_again_and_gives_the_same_program(lm, sim, tmp_path):
    student = dspex.Predict("question -> answer", lm=lm)
    first = search().compile(student, trainset=data(12, "t"), valset=data(8, "v"), run_dir=tmp_path / "run")
    asked = len(sim.log)
    again = search().compile(student, trainset=data(12, "t"), valset=data(8, "v"), run_dir=tmp_path / "run")
    assert len(sim.log) == asked  # every bootstrap and every score came from the journal
    assert again.demos == first.demos and again.compile_report.resumed_steps > 0
    with pytest.raises(dspex.ConfigError, match="seed"):
        search(seed=5).compile(student, trainset=data(12, "t"), valset=data(8, "v"), run_dir=tmp_path / "run")


def test_a_budget_stops_dispatching_with_the_best_so_far(lm):
    compiled = search(parallel=1).compile(dspex.Predict("question -> answer", lm=lm), trainset=data(12, "t"),
                                          valset=data(8, "v"), budget_tokens=6000)
    report = compiled.compile_report
    assert report.stopped == "budget" and 2 <= len(report.candidates) < 7
    assert report.score == 100.0 and compiled.demos  # the best so far (labeled demos) comes back
    per_request = report.usage.total_tokens / report.usage.requests
    assert report.usage.total_tokens <= 6000 + 16 * per_request * 1.5  # overspend bounded by what was in flight


RUNNER = textwrap.dedent("""
    import sys, json, dspex
    sys.path.insert(0, sys.argv[3])
    from tests.dspex.teleprompt.conftest import data, exact
    with dspex.runtime("local", cache_dir=sys.argv[2] + "/cache", log_level="error"):
        lm = dspex.LM("openai/task", api_key=sys.argv[4], base_url=sys.argv[1], cache=False)
        compiled = dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=6, max_bootstrapped_demos=2,
            max_labeled_demos=2).compile(dspex.Predict("question -> answer", lm=lm), trainset=data(16, "t"),
            valset=data(12, "v"), run_dir=sys.argv[2] + "/run", max_concurrency=1)
        print(json.dumps(compiled.demos))
""")


@pytest.mark.slow
def test_kill_9_of_the_compiling_process_then_resume_gives_the_identical_program(sim, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    args = [sys.executable, "-c", RUNNER, sim.base_url(), str(tmp_path), root, KEY]
    clean = subprocess.run(args[:4] + [str(tmp_path / "clean")] + args[5:], capture_output=True, text=True,
                           timeout=120)
    assert clean.returncode == 0, clean.stderr[-2000:]
    uninterrupted = len(sim.log)
    sim.clear_log()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "run" / "journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("candidate") < 2):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first_part = len(sim.log)
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(clean.stdout.splitlines()[-1])
    assert first_part < uninterrupted  # it really was cut short
    # one request at a time, so the count is deterministic: only the request in flight at the kill is asked twice
    assert len(sim.log) <= uninterrupted + 1


@pytest.mark.slow
def test_a_crash_of_the_actors_a_compile_runs_on_is_a_supervised_restart_and_it_goes_on(sim, tmp_path, monkeypatch):
    """kill -9 of the evaluation workers mid-compile (the supervised actors a compile's candidates are
    scored on): restarted by their supervisor, their examples re-queued; the compile finishes with the
    program an undisturbed one gives, each candidate journaled once. (The compile's journal itself is
    written by the compiling process, not an actor: see dspex/teleprompt/job.py.)"""
    import threading

    from dspex.testing import Faults
    from tests.conftest import pids_titled

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the candidates are scored on worker processes
    sim.set_faults(Faults(latency=0.03))  # an evaluation lasts long enough to be caught in flight

    def compile_once(run_dir, killer=None):
        with dspex.runtime("multiproc", cache_dir=tmp_path / "cache", log_level="error") as rt:
            events: list = []
            rt.subscribe(events.append)
            lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
            if killer:
                threading.Thread(target=killer, args=(run_dir,), daemon=True).start()
            compiled = dspex.BootstrapFewShotWithRandomSearch(
                exact, num_candidate_programs=6, max_bootstrapped_demos=2, max_labeled_demos=2, parallel=1).compile(
                dspex.Predict("question -> answer", lm=lm), trainset=data(16, "t"), valset=data(30, "v"),
                run_dir=run_dir, max_concurrency=2)
            return compiled, events

    killed = []

    def kill_workers(run_dir):
        journal = run_dir / "journal.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            # mid-evaluation: two candidates journaled, and a candidate's rows part-way (its workers are busy)
            busy = [f for f in run_dir.glob("rows-candidate-*.jsonl") if 3 <= len(f.read_bytes().splitlines()) < 25]
            if journal.exists() and journal.read_text().count('"candidate"') >= 2 and busy:
                for pid in pids_titled(b"dspex: eval-worker"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)

    clean, _ = compile_once(tmp_path / "clean")
    crashed, events = compile_once(tmp_path / "crashed", kill_workers)
    assert killed, "no evaluation worker was found to kill"
    assert any(getattr(e, "kind", "") == "restart" and e.child.startswith("worker-") for e in events)
    assert crashed.demos == clean.demos and crashed.compile_report.score == clean.compile_report.score == 100.0
    entries = [json.loads(line) for line in (tmp_path / "crashed" / "journal.jsonl").read_text().splitlines()]
    assert sum(e["kind"] == "candidate" for e in entries) == len(crashed.compile_report.candidates)


def test_a_token_budget_that_cannot_hold_the_baseline_is_refused_before_anything_is_sent(lm, sim):
    with pytest.raises(dspex.BudgetExceeded, match="baseline"):
        search().compile(dspex.Predict("question -> answer", lm=lm), trainset=data(8, "t"), valset=data(8, "v"),
                         budget_tokens=100)
    assert sim.log == []


def test_ctrl_c_while_candidates_are_scored_returns_the_best_so_far_promptly(sim, tmp_path):
    """A real SIGINT while several candidates are in flight: they stop, the best scored one comes back."""
    import threading

    from dspex.testing import Faults

    sim.set_faults(Faults(latency=0.05))
    sim.clear_log()
    interrupted = []

    def interrupt_once_candidates_are_scored():  # a first wave of candidates scored (4 trials x 40 rows at once)
        if wait_until(lambda: len(sim.log) >= 360, timeout=60):
            interrupted.append(time.monotonic())
            signal.raise_signal(signal.SIGINT)

    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        lm = dspex.LM("openai/task", api_key=KEY, base_url=sim.base_url(), cache=False)
        threading.Thread(target=interrupt_once_candidates_are_scored, daemon=True).start()
        compiled = dspex.BootstrapFewShotWithRandomSearch(exact, num_candidate_programs=12, max_bootstrapped_demos=2,
                                                          max_labeled_demos=2).compile(
            dspex.Predict("question -> answer", lm=lm), trainset=data(16, "t"), valset=data(40, "v"),
            run_dir=tmp_path / "run")
        took = time.monotonic() - interrupted[0]
    report = compiled.compile_report
    assert report.stopped == "cancelled" and 0 < len(report.candidates) < 15
    assert took < 4.0  # the in-flight candidates stopped, they were not run to the end


def test_a_compile_whose_lm_calls_all_fail_says_so_instead_of_scoring_zero(sim, tmp_path):
    from dspex.teleprompt import EvaluationFailed

    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None):
        wrong = dspex.LM("openai/task", api_key="sk-wrong-key-000000", base_url=sim.base_url(), retries=0)
        with pytest.raises(EvaluationFailed, match="AuthError"):
            search().compile(dspex.Predict("question -> answer", lm=wrong), trainset=data(6, "t"),
                             valset=data(4, "v"), run_dir=tmp_path / "run")
        assert not (tmp_path / "run" / "lock").exists()  # the failed compile let its run directory go
