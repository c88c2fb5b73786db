"""The tutorials in docs/tutorials run as written, so they cannot rot.

Each tutorial's ```python blocks, in order, are one script. It runs in a fresh interpreter (a new session, so
every process it starts is in one process group), in a temporary folder, with its own response cache and
without any provider key of this machine: the tutorials talk to dspex's provider simulator only. The script
keeps the Markdown file's line numbers (the lines outside python blocks are blank), so a traceback names the
tutorial's line. Each ```output block must appear in what the script printed, in order: the outputs the prose
shows are the ones the code gives. If the script raises half way, the runner closes what the tutorial opened
(`stack`, or `rt` and `sim`); a script still running at the timeout, or when the test is interrupted, is
killed with its whole process group, by the group's id (never by name).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
TIMEOUT_S = 300
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)

# Runs the tutorial's script; if it raises, closes what it opened (a closed one closes again harmlessly).
RUNNER = r"""
import sys
script, name = sys.argv[1], sys.argv[2]
namespace = {"__name__": "__main__", "__file__": name}
with open(script, encoding="utf-8") as fh:
    code = compile(fh.read(), name, "exec")
try:
    exec(code, namespace)
except BaseException:
    for opened in ("stack", "rt", "sim"):
        value = namespace.get(opened)
        close = getattr(value, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                print(f"test_docs: closing {opened} failed: {exc!r}", file=sys.stderr)
    raise
"""


def blocks(text: str, language: str) -> list[tuple[int, str]]:
    """The fenced blocks of ``language``: (the 0-based line of their first line, their text)."""
    return [(text.count("\n", 0, m.start("body")), m.group("body"))
            for m in FENCE.finditer(text) if m.group("info").strip() == language]


def script_of(text: str) -> str:
    """The python blocks as one script that keeps the Markdown's line numbers."""
    lines = [""] * (text.count("\n") + 1)
    for first, body in blocks(text, "python"):
        for offset, line in enumerate(body.splitlines()):
            lines[first + offset] = line
    return "\n".join(lines) + "\n"


def provider_free_environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["DSPEX_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_script(path: Path, tmp_path: Path) -> tuple[int, str, str]:
    script = tmp_path / (path.stem + ".py")
    script.write_text(script_of(path.read_text(encoding="utf-8")), encoding="utf-8")
    shown = str(path.relative_to(TUTORIALS.parent.parent))
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(script), shown], cwd=tmp_path,
                            env=provider_free_environment(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # looked at without reaping it: a zombie at worst, so the group id is still its pid and names only the
        # processes of its own session
        exited = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        _kill_group(proc)
        out, err = proc.communicate()
        what = (f"did not finish within {TIMEOUT_S}s" if exited is None else
                f"exited {exited.si_status} but left processes holding its output for {TIMEOUT_S}s")
        pytest.fail(f"{shown} {what}\n--- stdout\n{out}\n--- stderr\n{err}")
    finally:
        if proc.poll() is None:  # still alive (the test itself was interrupted): stop it and its children
            _kill_group(proc)
            proc.wait()
    return proc.returncode, out, err


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (started with ``start_new_session``: the group's id is its pid),
    while ``proc`` is not yet reaped, so the id cannot name anyone else's group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _normalized(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


@pytest.mark.timeout(TIMEOUT_S + 30)
@pytest.mark.parametrize("name", sorted(p.name for p in TUTORIALS.glob("*.md")))
def test_tutorial_runs_as_written(name, tmp_path):
    path = TUTORIALS / name
    text = path.read_text(encoding="utf-8")
    assert blocks(text, "python"), f"{name} has no python blocks"
    code, out, err = run_script(path, tmp_path)
    assert code == 0, f"{name} exited {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    printed, position = _normalized(out), 0
    for first, expected in blocks(text, "output"):
        found = printed.find(_normalized(expected), position)
        assert found >= 0, (f"{name}:{first + 1}: this output block is not what the script printed (after the "
                            f"previous block's output)\n--- expected\n{expected}\n--- stdout\n{out}")
        position = found + len(_normalized(expected))


def test_the_tutorials_are_there():
    names = {p.name for p in TUTORIALS.glob("*.md")}
    assert {"first_program.md", "evaluate.md", "optimize.md", "rag.md"} <= names
