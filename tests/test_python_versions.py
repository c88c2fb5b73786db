"""Python 3.10, the oldest version dspex supports (as DSPy does), in CI: a fresh virtual environment with
dspex's test dependencies, then the tests of what 3.10 has broken before (``asyncio`` task contexts in
streaming, generic aliases in journal type errors, ``tomllib``) and a walk through the main paths (signatures,
providers over HTTP, Evaluate, the layers). The whole suite passes on 3.10 and 3.13 (run by hand: 1222
tests each); this keeps 3.10 from rotting between those runs. 3.11 runs everything, in `.venv`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ["tests/test_layers.py", "tests/dspex/test_journal.py", "tests/dspex/test_settings.py",
          "tests/dspex/dspy_parity/test_streaming.py", "tests/dspex/programs/test_streaming_dspy.py",
          "tests/dspex/test_signature.py", "tests/dspex/evaluate/test_evaluate_dspy.py",
          "tests/dspex/clients/test_providers.py"]


def python310() -> str | None:
    """A Python 3.10 interpreter: pyenv's own (not its shim, which needs a pyenv version set), else one on PATH."""
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        found = sorted(glob.glob(f"{root}/versions/3.10*/bin/python3.10"))
        if found:
            return found[-1]
    found = shutil.which("python3.10")
    return found if found and "/shims/" not in found else None


@pytest.mark.slow
def test_python_3_10_runs_the_tests_of_what_it_broke_before(tmp_path):
    interpreter = python310()
    if interpreter is None:
        pytest.skip("no Python 3.10 on this machine (pyenv install 3.10 to run this)")
    if sys.version_info[:2] == (3, 10):
        pytest.skip("this suite already runs on 3.10")
    source, venv = tmp_path / "source", tmp_path / "venv"
    # installed from a copy: setuptools writes build/ and *.egg-info next to the sources it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__",
                                                                "test-artifacts", "runs", "benchmarks"))
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{source}[test]"], capture_output=True,
                               text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *SUBSET], cwd=source, env=env, capture_output=True, text=True, timeout=900)
    tail = run.stdout[-3000:]
    assert run.returncode == 0, tail + run.stderr[-2000:]
    assert "Python 3.10" in subprocess.run([str(venv / "bin" / "python"), "--version"], capture_output=True,
                                           text=True).stdout
    assert " passed" in tail and " failed" not in tail
