"""A separate virtual environment with DSPy pinned, for side-by-side runs (never a dependency of dspex)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DSPY_VERSION = "3.4.1"
VENV = Path(__file__).resolve().parent / ".venv-dspy"


def ensure() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import dspy, optuna; print(dspy.__version__)"], capture_output=True, text=True)
    if probe.stdout.strip() != DSPY_VERSION:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"dspy=={DSPY_VERSION}", "optuna"], check=True)
    return python
