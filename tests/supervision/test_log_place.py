"""Thespian's own log: a private folder per process runtime, removed on close; a user's THESPLOG_FILE wins."""

from __future__ import annotations

import glob
import os
import stat
import tempfile

from supervision import ActorRuntime


def ours() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), f"supervision-{os.getpid()}*")))


def test_a_process_runtime_logs_into_a_private_folder_and_removes_it(monkeypatch):
    monkeypatch.delenv("THESPLOG_FILE", raising=False)
    before = ours()
    with ActorRuntime("multiproc", "logs"):
        folder = os.path.dirname(os.environ["THESPLOG_FILE"])
        assert folder in ours() - before
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert ours() == before and "THESPLOG_FILE" not in os.environ


def test_a_pre_created_symlink_is_never_followed(monkeypatch, tmp_path):
    """The old fixed name supervision-<pid> is not used: a link planted there points nowhere we write."""
    monkeypatch.delenv("THESPLOG_FILE", raising=False)
    target = tmp_path / "victim"
    planted = os.path.join(tempfile.gettempdir(), f"supervision-{os.getpid()}")
    os.symlink(target, planted)
    try:
        with ActorRuntime("multiproc", "logs"):
            assert not os.environ["THESPLOG_FILE"].startswith(planted + os.sep)
        assert not target.exists()
    finally:
        os.unlink(planted)


def test_the_users_thesplog_file_is_kept(monkeypatch, tmp_path):
    mine = str(tmp_path / "mine.log")
    monkeypatch.setenv("THESPLOG_FILE", mine)
    with ActorRuntime("multiproc", "logs"):
        assert os.environ["THESPLOG_FILE"] == mine
    assert os.environ["THESPLOG_FILE"] == mine and tmp_path.exists()
