"""Journals under crashes, rivals and a full disk: a torn last line (even inside a multi-byte character)
is skipped; damage elsewhere is named; one run per journal (an OS lock, taken over from a dead holder);
a write the disk refuses stops the run with its partial result. Real files, /dev/full, real processes."""

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
from dspex.errors import JournalCorrupt, JournalError, JournalLocked, JournalWriteError
from dspex.evaluate import EvaluationCancelled
from dspex.journal import JournalWriter, RunLock, append_record, lock_path, read_journal
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


# --- reading -----------------------------------------------------------------------------------------

def test_a_last_line_torn_inside_a_multibyte_character_is_skipped(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b'{"a": "\xc3\xa9t\xc3\xa9"}\n{"b": 2}\n' + TORN_UTF8)
    assert read_journal(journal) == [{"a": "été"}, {"b": 2}]


@pytest.mark.parametrize("bad, reason", [(b"not json", "invalid JSON"), (b'{"x": "\xc3"}', "invalid UTF-8"),
                                         (b"[1, 2]", "a JSON list")])
def test_damage_before_the_last_line_names_the_file_and_the_line(tmp_path, bad, reason):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b'{"a": 1}\n\n' + bad + b'\n{"b": 2}\n')
    with pytest.raises(JournalCorrupt, match=reason) as caught:
        read_journal(journal)
    assert caught.value.line == 3 and caught.value.path == str(journal) and f"{journal}, line 3" in str(caught.value)


def test_a_fifo_is_refused_not_read_forever(tmp_path):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(JournalError, match="not a regular file"):
        read_journal(fifo)


# --- writing -----------------------------------------------------------------------------------------

def test_appending_after_a_crash_cuts_the_torn_line_off_first(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b'{"a": 1}\n' + TORN_UTF8)
    with JournalWriter(journal) as writer:
        writer.append({"b": "é"})
    assert lines(journal) == [{"a": 1}, {"b": "é"}]
    journal.write_bytes(b'{"a": 1}\n{"whole": true}')  # a whole record whose newline never came
    with JournalWriter(journal) as writer:
        writer.append({"b": 2})
    assert lines(journal) == [{"a": 1}, {"whole": True}, {"b": 2}]


def test_a_full_disk_is_a_journal_write_error(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.symlink_to("/dev/full")  # every write: ENOSPC
    with JournalWriter(journal) as writer, pytest.raises(JournalWriteError, match="No space left") as caught:
        writer.append({"a": 1})
    assert caught.value.errno == errno.ENOSPC and caught.value.path == str(journal)


def test_a_journal_that_cannot_be_opened_any_more_is_a_journal_write_error(tmp_path):
    with pytest.raises(JournalWriteError, match="No such file") as caught:  # its folder removed mid-run
        append_record(tmp_path / "gone" / "journal.jsonl", {"a": 1})
    assert caught.value.errno == errno.ENOENT


def test_a_write_cut_short_by_the_disk_leaves_no_torn_line(tmp_path):
    """The file size limit (RLIMIT_FSIZE, in a child process) lets part of the line in, then refuses:
    the journal is cut back to its last whole line, so a later append is not glued to a torn one."""
    journal = tmp_path / "j.jsonl"
    code = textwrap.dedent("""
        import json, os, resource, signal, sys
        from dspex.journal import JournalWriter
        from dspex.errors import JournalWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        writer = JournalWriter(sys.argv[1])
        writer.append({"a": 1})
        size = os.path.getsize(sys.argv[1])
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, resource.RLIM_INFINITY))
        try:
            writer.append({"b": "x" * 100})
        except JournalWriteError as exc:
            print(json.dumps({"errno": exc.errno, "size": os.path.getsize(sys.argv[1]), "was": size}))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(journal)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["errno"] == errno.EFBIG and report["size"] == report["was"]
    assert lines(journal) == [{"a": 1}]


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
    assert sorted(e["index"] for e in lines(journal)) == list(range(12))  # each row once


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
