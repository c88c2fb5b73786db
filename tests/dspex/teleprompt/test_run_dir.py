"""A compile's run directory under crashes, rivals and a full disk: a journal torn inside a multi-byte
character resumes; a second compile on a running one's run_dir is refused before it sends anything; a
journal the disk stops taking stops the compile with its best program so far."""

from __future__ import annotations

import errno
import itertools
import json
import os
import socket
import threading

import pytest

import dspex
from dspex.errors import JournalLocked, JournalWriteError

from ...conftest import wait_until
from .conftest import data, exact


def search(metric=exact, **options):
    return dspex.BootstrapFewShotWithRandomSearch(metric, num_candidate_programs=2, max_bootstrapped_demos=2,
                                                  max_labeled_demos=2, **options)


def test_a_compile_resumes_from_a_journal_torn_inside_a_multibyte_character(lm, sim, tmp_path):
    student = dspex.Predict("question -> answer", lm=lm)
    first = search().compile(student, trainset=data(8, "t"), valset=data(6, "v"), run_dir=tmp_path / "run")
    journal = tmp_path / "run" / "journal.jsonl"
    with open(journal, "ab") as fh:
        fh.write('{"kind": "candidate", "description": "caf'.encode() + "é".encode()[:1])  # kill -9 inside the é
    asked = len(sim.log)
    again = search().compile(student, trainset=data(8, "t"), valset=data(6, "v"), run_dir=tmp_path / "run")
    assert len(sim.log) == asked and again.demos == first.demos and again.compile_report.resumed_steps > 0
    assert all(json.loads(line) for line in journal.read_bytes().decode("utf-8").splitlines())  # the torn line cut
    assert not (tmp_path / "run" / "lock").exists()


def test_a_second_compile_on_a_running_compiles_run_dir_is_refused_before_it_sends_anything(lm, sim, tmp_path):
    gate, results = threading.Event(), {}

    def held(example, pred, trace=None):  # the first compile stays in flight until the second was tried
        gate.wait(30)
        return exact(example, pred)

    def first():
        results["first"] = search(held, parallel=1).compile(dspex.Predict("question -> answer", lm=lm),
                                                            trainset=data(8, "t"), valset=data(6, "v"),
                                                            run_dir=tmp_path / "run")

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert wait_until(lambda: len(sim.log) >= 6)  # the baseline's 6 rows, each held at its metric
        sent = len(sim.log)
        with pytest.raises(JournalLocked, match=f"pid {os.getpid()} on {socket.gethostname()}") as caught:
            search().compile(dspex.Predict("question -> answer", lm=lm), trainset=data(8, "t"), valset=data(6, "v"),
                             run_dir=tmp_path / "run")
        assert "run directory" in str(caught.value) and len(sim.log) == sent  # the second one sent nothing
    finally:
        gate.set()
        thread.join(60)
    report = results["first"].compile_report
    assert report.stopped == "done" and report.lm_calls - report.usage.cache_hits == len(sim.log)  # one compile's


def test_a_full_disk_mid_compile_stops_it_with_the_best_program_so_far(lm, sim, tmp_path):
    """The journal becomes /dev/full (every write: ENOSPC) while the second candidate is scored: its step
    cannot be recorded, so the compile stops as Ctrl-C stops it, and the error carries the program."""
    run_dir = tmp_path / "run"
    calls = itertools.count(1)

    def filling(example, pred, trace=None):
        if next(calls) == 7:  # the first metric call of candidate 1 (candidate 0 scored 6 rows, recorded)
            os.replace(_symlink_to_dev_full(run_dir), run_dir / "journal.jsonl")
        return exact(example, pred)

    with pytest.raises(JournalWriteError, match="No space left") as caught:
        search(filling, parallel=1).compile(dspex.Predict("question -> answer", lm=lm), trainset=data(8, "t"),
                                            valset=data(6, "v"), run_dir=run_dir, max_concurrency=1)
    compiled = caught.value.result
    report = compiled.compile_report
    assert caught.value.errno == errno.ENOSPC and report.stopped == "journal"
    assert [c.id for c in report.candidates] == [0, 1] and report.score == 100.0 and compiled.demos  # the best so far
    assert len(sim.log) == 12 == report.lm_calls  # nothing dispatched after the refused write
    assert not (run_dir / "lock").exists()


def _symlink_to_dev_full(run_dir):
    link = run_dir / "full.tmp"
    link.symlink_to("/dev/full")
    return link
