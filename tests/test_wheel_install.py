"""dspex as a user installs it: a wheel built from this tree, installed into a fresh virtual environment
(its dependencies from the package registry, as pip finds them), then the installed `dspex` command: its
version, `doctor`, and an evaluation against the provider simulator on 127.0.0.1; the data files ship."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dspex.testing import ProviderServer

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-test-wheel-0987654321"


@pytest.mark.slow
def test_a_built_wheel_installs_in_a_fresh_venv_and_runs_an_evaluation(tmp_path):
    dist, venv, source = tmp_path / "dist", tmp_path / "venv", tmp_path / "source"
    # built from a copy: setuptools writes build/ and *.egg-info next to the sources it builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", ".venv-dspy", "build", "*.egg-info",
                                                                "__pycache__", "test-artifacts", "runs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("dspex-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True,
                               text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-2000:]
    python = str(venv / "bin" / "python")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OPENAI_API_KEY": KEY,
           "DSPEX_CACHE_DIR": str(tmp_path / "cache")}
    run = lambda *args: subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,  # noqa: E731
                                       timeout=300)
    version = run(str(venv / "bin" / "dspex"), "--version")
    assert version.returncode == 0 and version.stdout.startswith("dspex "), version.stderr
    where = run(python, "-c", "import dspex, dspex.datasets as d; print(dspex.__file__); "
                              "print(len(d.countries_qa(1, 1, 1).corpus))")
    assert where.returncode == 0, where.stderr
    location, passages = where.stdout.split()
    assert str(venv) in location and passages == "280"  # the installed package, with its data
    # the core install is small: no optimizer library, no model runtime; a feature that needs an extra says so
    extra = run(python, "-c", "import dspex\ntry:\n    dspex.MIPROv2(metric=lambda e, p, t=None: 1)\n"
                              "except dspex.OptionalDependencyMissing as exc:\n    print(exc.extra)")
    assert extra.returncode == 0 and extra.stdout.split() == ["optuna"], extra.stderr
    doctor = run(str(venv / "bin" / "dspex"), "doctor", "--json")
    assert doctor.returncode in (0, 1) and json.loads(doctor.stdout)["checks"], doctor.stderr
    (tmp_path / "metric.py").write_text("def exact(example, pred, trace=None):\n    return pred.answer == 'ok'\n")
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps({"question": f"q{i}", "answer": "ok"}) + "\n"
                                                for i in range(5)))
    made = run(python, "-c", "import dspex\nwith dspex.runtime('local', log_level='error'):\n"
                             "    dspex.Predict('question -> answer').save('program.json')")
    assert made.returncode == 0, made.stderr
    with ProviderServer(answer="[[ ## answer ## ]]\nok\n\n[[ ## completed ## ]]", api_key=KEY) as sim:
        out = run(str(venv / "bin" / "dspex"), "eval", "program.json", "--data", "dev.jsonl", "--metric",
                  "metric:exact", "--model", "openai/wheel-test", "--base-url", sim.base_url(), "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["score"] == 100.0 and len(sim.log) == 5
