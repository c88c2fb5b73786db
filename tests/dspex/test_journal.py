"""Journals under crashes, rivals and a full disk: a torn last line (even inside a multi-byte character)
is skipped; damage elsewhere is named; every line is an entry of a known kind with its fields; one run per
journal (an OS lock, taken over from a dead holder); a write the disk refuses stops the run with its
partial result. Real files, /dev/full, real processes. (Journals of the previous format:
test_journal_compat.py.)"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import dspex
from dspex.errors import JournalCorrupt, JournalError, JournalLocked, JournalTooNew, JournalWriteError
from dspex.evaluate import EvaluationCancelled
from dspex.journal import (FORMAT, BootstrapBatch, BootstrapTrace, CoproProposal, CoproScore, EntryKind, FullScore, Header, JournalType, JournalWriter,
                           OptunaTrial, PoolCandidate, ProposalOutcome, Row, RuleInduction, RunLock, ScoredCandidate,
                           SimbaBatch, SimbaFinal,
                           SimbaProposal, SimbaScore, SimbaTrajectory, Step, Trial, append,
                           lock_path, read)
from dspex.testing import ProviderServer

from ..conftest import wait_until
from .scripted import chat

KEY = "sk-test-journal-123456"
ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count()
TORN_UTF8 = '{"index": 99, "example": {"question": "caf'.encode() + "é".encode()[:1]  # kill -9 inside the é


def answer(req) -> str:
    number = req.last_user.split("[[ ## question ## ]]\n")[-1].split("\n")[0]
    return chat(answer=number.upper())


def exact(example, pred, trace=None):
    return pred.answer == example.question.upper()


def devset(n):
    prefix = f"j{next(_ids)}-"
    return [dspex.Example(question=f"{prefix}{i}", answer="").with_inputs("question") for i in range(n)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with ProviderServer(answer=answer, api_key=KEY) as server, \
            dspex.runtime("local", cache_dir=tmp_path_factory.mktemp("cache"), log_level=None):
        lm = dspex.LM("openai/journal", api_key=KEY, base_url=server.base_url(), rpm=None, cache=False)
        yield server, dspex.Predict("question -> answer", lm=lm)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


def holder(path: Path) -> subprocess.Popen:
    """Another process holding ``path``'s lock (as a running Evaluate or compile holds it)."""
    code = textwrap.dedent("""
        import sys, time
        from dspex.journal import RunLock
        lock = RunLock(sys.argv[1], "it").acquire()
        print("held", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# --- reading ---------------------------------------------------------------------------------------

def row(index: int, **fields) -> bytes:
    return json.dumps({"index": index, "score": 1.0, **fields}, ensure_ascii=False).encode() + b"\n"


def test_a_last_line_torn_inside_a_multibyte_character_is_skipped(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(row(0, worker="été") + row(1) + TORN_UTF8)
    assert [(r.index, r.worker) for r in read(journal).entries] == [(0, "été"), (1, "")]


@pytest.mark.parametrize("bad, reason", [(b"not json", "invalid JSON"), (b'{"x": "\xc3"}', "invalid UTF-8"),
                                         (b"[1, 2]", "a JSON list"), (b'{"kind": "nonsense"}', "does not know"),
                                         (b'{"index": 2, "score": "high"}', "Row.score must be a finite float"),
                                         (b'{"index": 2}', "score"),
                                         (b'{"kind": "header", "journal": "evaluation"}', "after the first"),
                                         (b'{"kind": "candidate", "id": 1, "score": NaN}', "finite")])
def test_damage_before_the_last_line_names_the_file_and_the_line(tmp_path, bad, reason):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(row(0) + b"\n" + bad + b"\n" + row(1))
    with pytest.raises(JournalCorrupt, match=reason) as caught:
        read(journal)
    assert caught.value.line == 3 and caught.value.path == str(journal) and f"{journal}, line 3" in str(caught.value)


def test_a_fifo_is_refused_not_read_forever(tmp_path):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(JournalError, match="not a regular file"):
        read(fifo)


@pytest.mark.parametrize("entry", [
    Header(JournalType.COMPILE.value, optimizer="GEPA", seed=3, fingerprint={"student": "ab12"}),
    Row(4, 0.5, {"data": {"q": "é"}, "inputs": ["q"]}, {"a": "É"}, [10, 2], 0.001, None, 1, "w1", "ok", []),
    BootstrapTrace("candidate-2", 3, 0, True, [{"predictor": "self", "inputs": {}, "outputs": {}}], None),
    BootstrapBatch("candidate-2", 1, [3, 5, 8]),
    ScoredCandidate(1, "labeled demos only", 0.75, 12, True), Trial(0, [[1, 2]], [3, 1], 0.5),
    FullScore([[0, 0]], 1.0), PoolCandidate(2, {"self": "Say it."}, [0, 1], "merge of 0 and 1", 0.5),
    ProposalOutcome(0, 1, "reflect", [0], "self", "minibatch 3 > 1"),
    CoproProposal(1, "self", 2, "Answer briefly.", "Answer:", None),
    CoproScore(1, "self", 2, {"self": ["Answer briefly.", "Answer:"]}, 0.5),
    SimbaBatch(1, [3, 0], [[0, 2], [1, 1]]),
    SimbaTrajectory(1, 0, 3, 2, 1.0, {"a": "É"}, [{"predictor": "self", "inputs": {"q": "é"}, "outputs": {}}], None,
                    None),
    SimbaProposal(1, 0, 3, 2, "rule", [0], {"self": "Answer in upper case."}, True, "a rule from the prompt model"),
    SimbaScore(1, 5, "ab12", [1.0, 0.0]), SimbaFinal(5, "ab12", 0.5),
    RuleInduction(2, "self", "Answer in upper case.", 8, None), RuleInduction(0, "self", None, 3, "no rules"),
    OptunaTrial(3, {"self": 2}, 0.75),
], ids=lambda e: type(e).__name__)
def test_every_entry_reads_back_as_itself(tmp_path, entry):
    journal = tmp_path / "j.jsonl"
    append(journal, entry)
    kinds = [type(entry)] if not isinstance(entry, (Header, Row)) else []
    got = read(journal, *kinds)
    assert (got.header if isinstance(entry, Header) else got.entries[0]) == entry


def test_a_reader_names_the_kinds_it_expects(tmp_path):
    journal = tmp_path / "j.jsonl"
    with JournalWriter(journal, header=Header(JournalType.COMPILE.value, optimizer="X", seed=0)) as writer:
        writer.append(ScoredCandidate(0, "zero-shot", 0.5, 4, True))
        writer.append(FullScore([[0, 0]], 0.75))
    loose = read(journal)  # a reader that names no class (the dashboard) gets each step as written
    assert loose.entries == (Step(EntryKind.CANDIDATE, {"id": 0, "description": "zero-shot", "score": 0.5,
                                                          "lm_calls": 4, "complete": True}),
                             Step(EntryKind.FULL, {"config": [[0, 0]], "score": 0.75}))
    assert loose.best() == 0.75 and loose.format == FORMAT
    with pytest.raises(JournalCorrupt, match="line 3: a full entry, which a compile journal"):
        read(journal, ScoredCandidate, journal=JournalType.COMPILE)  # random search's journal holds no "full"
    with pytest.raises(JournalError, match="is a compile journal, not the evaluation journal"):
        read(journal, journal=JournalType.EVALUATION)
    with pytest.raises(TypeError, match="both read 'candidate'"):
        read(journal, ScoredCandidate, PoolCandidate)


def test_a_writer_refuses_a_value_that_is_not_of_its_fields_types():
    with pytest.raises(TypeError, match=r"Trial.config must be list\[list\[int\]\]"):
        Trial(0, [(1, 2)], [0], 0.5)  # tuples are not what the journal reads back
    with pytest.raises(TypeError, match="Row.index must be int"):
        Row(True, 1.0)


# --- writing -----------------------------------------------------------------------------------------

def test_a_new_journal_gets_its_header_first_and_only_once(tmp_path):
    journal = tmp_path / "j.jsonl"
    header = Header(JournalType.EVALUATION.value)
    for index in range(2):
        with JournalWriter(journal, header=header) as writer:
            writer.append(Row(index, 1.0))
    assert [e["kind"] for e in lines(journal)] == ["header", "row", "row"]
    assert lines(journal)[0] == {"kind": "header", "format": FORMAT, "journal": "evaluation"}


def test_appending_after_a_crash_cuts_the_torn_line_off_first(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(row(0) + TORN_UTF8)
    with JournalWriter(journal) as writer:
        writer.append(Row(1, 1.0, worker="é"))
    assert [(e["index"], e.get("worker")) for e in lines(journal)] == [(0, None), (1, "é")]
    journal.write_bytes(row(0) + row(1)[:-1])  # a whole record whose newline never came
    with JournalWriter(journal) as writer:
        writer.append(Row(2, 1.0))
    assert [e["index"] for e in lines(journal)] == [0, 1, 2]


def test_a_journal_of_a_newer_format_is_neither_read_nor_appended_to(tmp_path):
    journal = tmp_path / "j.jsonl"
    newer = json.dumps({"kind": "header", "format": FORMAT + 1, "journal": "something new"}).encode() + b"\n"
    journal.write_bytes(newer + b'{"kind": "what-comes-next"}\n')
    with pytest.raises(JournalTooNew, match=f"format {FORMAT + 1}; this one reads formats up to {FORMAT}"):
        read(journal)
    with pytest.raises(JournalTooNew):
        JournalWriter(journal)
    assert journal.read_bytes().startswith(newer)


def test_a_full_disk_is_a_journal_write_error(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.symlink_to("/dev/full")  # every write: ENOSPC
    with JournalWriter(journal) as writer, pytest.raises(JournalWriteError, match="No space left") as caught:
        writer.append(Row(0, 1.0))
    assert caught.value.errno == errno.ENOSPC and caught.value.path == str(journal)


def test_a_journal_that_cannot_be_opened_any_more_is_a_journal_write_error(tmp_path):
    with pytest.raises(JournalWriteError, match="No such file") as caught:  # its folder removed mid-run
        append(tmp_path / "gone" / "journal.jsonl", Row(0, 1.0))
    assert caught.value.errno == errno.ENOENT


def test_a_write_cut_short_by_the_disk_leaves_no_torn_line(tmp_path):
    """The file size limit (RLIMIT_FSIZE, in a child process) lets part of the line in, then refuses:
    the journal is cut back to its last whole line, so a later append is not glued to a torn one."""
    journal = tmp_path / "j.jsonl"
    code = textwrap.dedent("""
        import json, os, resource, signal, sys
        from dspex.journal import JournalWriter, Row
        from dspex.errors import JournalWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        writer = JournalWriter(sys.argv[1])
        writer.append(Row(0, 1.0))
        size = os.path.getsize(sys.argv[1])
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, resource.RLIM_INFINITY))
        try:
            writer.append(Row(1, 1.0, worker="x" * 100))
        except JournalWriteError as exc:
            print(json.dumps({"errno": exc.errno, "size": os.path.getsize(sys.argv[1]), "was": size}))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(journal)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["errno"] == errno.EFBIG and report["size"] == report["was"]
    assert [e["index"] for e in lines(journal)] == [0]


# --- the lock ----------------------------------------------------------------------------------------

def test_a_lock_names_its_live_holder_and_a_dead_ones_lock_is_taken_over(tmp_path):
    path = tmp_path / "run.lock"
    proc = holder(path)
    try:
        with pytest.raises(JournalLocked) as caught:
            RunLock(path, "the run directory x").acquire()
        assert caught.value.pid == proc.pid and caught.value.host == socket.gethostname()
        assert f"pid {proc.pid} on {socket.gethostname()}" in str(caught.value) and "exited" not in str(caught.value)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # kill -9: its lock file stays, its lock does not
        proc.wait()
    assert path.exists()
    with RunLock(path, "the run directory x"):
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(JournalLocked, match=f"pid {os.getpid()}"):  # one run per journal in one process too
            RunLock(path, "the run directory x").acquire()
    assert not path.exists()


# --- Evaluate ----------------------------------------------------------------------------------------

def test_evaluate_resumes_from_a_journal_torn_inside_a_multibyte_character(world, tmp_path):
    server, program = world
    data = devset(20)
    full = dspex.Evaluate(data, exact, max_concurrency=4, progress=False).run(program)
    journal = tmp_path / "run.jsonl"
    journal.write_bytes(b"".join(json.dumps(r.to_json()).encode() + b"\n" for r in full.rows[:12]) + TORN_UTF8)
    server.clear_log()
    resumed = dspex.Evaluate(data, exact, max_concurrency=4, progress=False, journal=journal,
                             resume_from=journal).run(program)
    assert len(server.log) == 8  # only the unfinished ones were asked again
    assert [(r.index, r.score) for r in resumed.rows] == [(r.index, r.score) for r in full.rows]
    assert sorted(e["index"] for e in lines(journal)) == list(range(20))  # the torn line cut, every row whole
    assert not lock_path(journal).exists()


def test_a_second_evaluate_on_a_running_journal_is_refused_before_it_sends_anything(world, tmp_path):
    server, program = world
    data, journal = devset(12), tmp_path / "run.jsonl"
    gate, results = threading.Event(), {}

    def held(example, pred, trace=None):  # the first run stays in flight until the second was tried
        gate.wait(30)
        return exact(example, pred)

    def first():
        results["first"] = dspex.Evaluate(data, held, max_concurrency=2, progress=False, journal=journal,
                                          resume_from=journal).run(program)

    server.clear_log()
    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert wait_until(lambda: len(server.log) >= 2)
        sent = len(server.log)
        with pytest.raises(JournalLocked, match=f"pid {os.getpid()} on {socket.gethostname()}"):
            dspex.Evaluate(data, exact, progress=False, journal=journal, resume_from=journal).run(program)
        assert len(server.log) == sent  # the second one sent nothing
    finally:
        gate.set()
        thread.join(30)
    assert len(results["first"].rows) == 12 and len(server.log) == 12
    assert sorted(r.index for r in read(journal).entries) == list(range(12))  # each row once


def test_a_full_disk_mid_run_returns_the_rows_so_far_in_a_journal_write_error(world, tmp_path):
    server, program = world
    data = devset(20)
    earlier = tmp_path / "earlier.jsonl"
    dspex.Evaluate(data[:12], exact, progress=False, journal=earlier).run(program)  # 12 rows paid for already
    journal = tmp_path / "full.jsonl"
    journal.symlink_to("/dev/full")
    server.clear_log()
    with pytest.raises(JournalWriteError, match="No space left") as caught:
        dspex.Evaluate(data, exact, max_concurrency=1, progress=False, journal=journal,
                       resume_from=earlier).run(program)
    result = caught.value.result
    assert caught.value.errno == errno.ENOSPC and result.aborted == "journal write failed"
    finished = [r for r in result.rows if not isinstance(r.error, EvaluationCancelled)]
    assert len(finished) == 12 + len(server.log) and all(r.score == 1.0 for r in finished)
    assert 1 <= len(server.log) <= 2  # it stopped dispatching at the first refused write
    assert result.usage.requests == len(server.log)


def test_a_journal_in_a_missing_folder_is_refused_before_anything_is_sent(world, tmp_path):
    server, program = world
    server.clear_log()
    with pytest.raises(dspex.ConfigError, match="does not exist"):
        dspex.Evaluate(devset(2), exact, progress=False, journal=tmp_path / "nope" / "run.jsonl").run(program)
    assert server.log == []


def test_damage_in_the_middle_of_a_resumed_journal_is_named_before_anything_is_sent(world, tmp_path):
    server, program = world
    data = devset(3)
    journal = tmp_path / "run.jsonl"
    dspex.Evaluate(data, exact, progress=False, journal=journal).run(program)
    rows = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(rows[0] + b'{"index": "one"}\n' + b"".join(rows[1:]))
    server.clear_log()
    with pytest.raises(JournalCorrupt, match="line 2"):
        dspex.Evaluate(data, exact, progress=False, journal=journal, resume_from=journal).run(program)
    assert server.log == []
