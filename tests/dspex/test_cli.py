"""The dspex command line end to end (subprocess) against the provider simulator: eval, optimize with
resume, doctor, Ctrl-C, and bad arguments (exit 2, with the fix in the message)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import dspex
from dspex.testing import Faults, ProviderServer

from .teleprompt.conftest import answer as fewshot_answer

KEY = "sk-test-cli-1234567890"
METRIC = "def exact(example, pred, trace=None):\n    return pred.answer == example.answer\n"


def rows(n: int, prefix: str) -> str:
    return "".join(json.dumps({"question": f"{prefix}{i}", "answer": f"{prefix}{i}".upper()}) + "\n" for i in range(n))


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "task_metric.py").write_text(METRIC)
    (tmp_path / "dev.jsonl").write_text(rows(12, "w"))
    (tmp_path / "train.jsonl").write_text(rows(16, "t"))
    with dspex.runtime("local", cache_dir=tmp_path / "save-cache", log_level="error"):
        dspex.Predict("question -> answer").save(tmp_path / "program.json")
    return tmp_path


def cli(workdir, *args, timeout=120, **environ):
    env = {**os.environ, "OPENAI_API_KEY": KEY, "DSPEX_CACHE_DIR": str(workdir / "cache"), **environ}
    return subprocess.run([sys.executable, "-m", "dspex", *args], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_eval_prints_one_json_object_and_exits_0(workdir):
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        out = cli(workdir, "eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact",
                  "--model", "openai/task", "--base-url", sim.base_url(), "--json")
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)  # the whole of stdout is one JSON object
        assert summary["examples"] == 12 and summary["failed"] == 0 and summary["score"] == 50.0
        assert summary["usage"]["requests"] == len(sim.log) == 12
        assert KEY not in out.stdout + out.stderr


def test_eval_with_a_journal_resumes_and_a_table_without_json(workdir):
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        base = ["eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact", "--model", "openai/task",
                "--base-url", sim.base_url(), "--journal", "rows.jsonl"]
        first = cli(workdir, *base)
        assert first.returncode == 0 and "score     50.00%  (12 examples, 0 failed)" in first.stdout
        assert "evaluate:" not in first.stderr  # no progress-bar frames when stderr is not a terminal
        again = cli(workdir, *base, "--resume", "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["usage"]["requests"] == 0
        assert len(sim.log) == 12


def test_eval_whose_every_call_fails_exits_1(workdir):
    with ProviderServer(answer=fewshot_answer, api_key="another-key-entirely") as sim:
        out = cli(workdir, "eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact",
                  "--model", "openai/task", "--base-url", sim.base_url(), "--json")
        assert out.returncode == 1 and json.loads(out.stdout)["failed"] == 12


@pytest.mark.parametrize("args, message", [
    (["eval", "missing.json", "--data", "dev.jsonl", "--metric", "task_metric:exact"], "missing.json does not exist"),
    (["eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric"], "must be module:function"),
    (["eval", "program.json", "--data", "dev.jsonl", "--metric", "nosuchmodule:f"], "cannot import 'nosuchmodule'"),
    (["eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:nope"], "has no 'nope'"),
    (["eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact", "--resume"], "--resume needs"),
    (["eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact", "--model", "acme/x"],
     "unknown provider 'acme'"),
    (["eval", "program.json", "--data", "train.jsonl", "--metric", "task_metric:exact", "--concurrency", "0"],
     "--concurrency must be >= 1"),
    (["optimize", "program.json", "--optimizer", "mipro", "--train", "train.jsonl", "--metric", "task_metric:exact",
      "--out", "o.json"], "needs --dev"),
    (["optimize", "program.json", "--optimizer", "simba", "--train", "train.jsonl", "--metric", "m:f", "--out", "o"],
     "invalid choice: 'simba'"),
    (["eval"], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_exit_2_and_say_what_to_fix(workdir, args, message):
    out = cli(workdir, *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr and out.stdout == ""


def test_a_bad_setting_in_dspex_toml_exits_2_naming_the_line(workdir):
    (workdir / "dspex.toml").write_text('base = "local"\nbudget_usd = -3\n')
    out = cli(workdir, "eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact")
    assert out.returncode == 2 and "budget_usd = -3 (from dspex.toml:2)" in out.stderr


def test_optimize_writes_the_program_and_a_second_run_resumes_from_the_run_dir(workdir):
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        args = ["optimize", "program.json", "--optimizer", "random-search", "--train", "train.jsonl", "--dev",
                "dev.jsonl", "--metric", "task_metric:exact", "--model", "openai/task", "--base-url", sim.base_url(),
                "--out", "compiled.json", "--run-dir", "run", "--json"]
        first = cli(workdir, *args, timeout=300)
        assert first.returncode == 0, first.stderr
        summary = json.loads(first.stdout)
        assert summary["score"] == 100.0 and summary["baseline"] == 50.0 and summary["stopped"] == "done"
        asked = len(sim.log)
        with dspex.runtime("local", cache_dir=workdir / "c2", log_level="error"):
            assert dspex.load(workdir / "compiled.json").demos  # a program that loads, with its demos
        again = cli(workdir, *args, timeout=300)
        assert again.returncode == 0, again.stderr
        resumed = json.loads(again.stdout)
        assert resumed["score"] == 100.0 and resumed["resumed_steps"] > 0 and len(sim.log) == asked


@pytest.mark.parametrize("optimizer", ["random-search", "mipro"])
def test_optimize_with_a_metric_that_fails_on_every_row_exits_1_naming_it(workdir, optimizer):
    (workdir / "bad_metric.py").write_text("def broken(example, pred, trace=None):\n    raise ValueError('oops')\n")
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        out = cli(workdir, "optimize", "program.json", "--optimizer", optimizer, "--train", "train.jsonl", "--dev",
                  "dev.jsonl", "--metric", "bad_metric:broken", "--model", "openai/task", "--base-url", sim.base_url(),
                  "--out", "compiled.json", timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr  # never a score of 0 with exit 0
    assert "EvaluationFailed" in out.stderr and "oops" in out.stderr and "Traceback" not in out.stderr
    assert not (workdir / "compiled.json").exists()


def test_ctrl_c_during_eval_exits_130_with_the_rows_so_far_in_the_journal(workdir):
    with ProviderServer(answer=fewshot_answer, api_key=KEY, faults=Faults(latency=0.2)) as sim:
        (workdir / "many.jsonl").write_text(rows(200, "w"))
        env = {**os.environ, "OPENAI_API_KEY": KEY, "DSPEX_CACHE_DIR": str(workdir / "cache")}
        proc = subprocess.Popen([sys.executable, "-m", "dspex", "eval", "program.json", "--data", "many.jsonl",
                                 "--metric", "task_metric:exact", "--model", "openai/task", "--base-url",
                                 sim.base_url(), "--journal", "rows.jsonl", "--concurrency", "4", "--json"],
                                cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(sim.log) < 12:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        summary = json.loads(stdout)
        written = (workdir / "rows.jsonl").read_text().splitlines()
        assert summary["aborted"] == "interrupted" and 0 < len(written) < 200


def test_doctor_reports_each_setting_with_its_source_and_never_a_key(workdir):
    (workdir / "dspex.toml").write_text('model = "openai/gpt-4o-mini"\n')
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    out = subprocess.run([sys.executable, "-m", "dspex", "doctor", "--json"], cwd=workdir, capture_output=True,
                         text=True, timeout=120, env={**env, "DSPEX_ANTHROPIC_API_KEY": ""})
    assert out.returncode in (0, 1), out.stderr
    report = json.loads(out.stdout)
    by_name = {c["check"]: c for c in report["checks"]}
    assert by_name["setting model"]["detail"] == "'openai/gpt-4o-mini' (dspex.toml:1)"
    assert by_name["actor system: local"]["ok"] and by_name["actor system: multiproc"]["ok"]
    assert "openai" in by_name["keys not set"]["detail"].split(" (")[0].split(", ")
    assert by_name["config file"]["detail"] == str(workdir / "dspex.toml") or \
        by_name["config file"]["detail"] == "dspex.toml"
    assert by_name["version dspex"]["detail"] == dspex.__version__ and "version thespian" in by_name
    assert by_name["setting cache_dir"]["detail"].startswith("/")  # a path as the shell writes it, not a repr
    assert report["ok"] == all(c["ok"] for c in report["checks"])
    assert all("fix" in c for c in report["checks"] if not c["ok"])


def test_dashboard_serves_past_runs_from_the_runs_directory_until_stopped(workdir):
    (workdir / "runs").mkdir()
    (workdir / "runs" / "old.jsonl").write_text(json.dumps({"index": 0, "example": {}, "prediction": None, "usage": [0, 0],
                                                            "cost": 0.0, "score": 1.0, "error": None, "attempts": 1,
                                                            "worker": "main", "trace": []}) + "\n")
    env = {**os.environ, "DSPEX_CACHE_DIR": str(workdir / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "dspex", "dashboard", "--runs-dir", "runs", "--duration", "30"],
                            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        import requests

        session = requests.Session()
        assert url.startswith("http://127.0.0.1:") and session.get(url).status_code == 200
        past = session.get(url.split("?")[0] + "api/past").json()
        assert past == [{"name": "old.jsonl", "kind": "evaluation", "examples": 1, "score": 100.0, "failed": 0,
                         "cost": 0.0}]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0


def test_dashboard_refuses_a_public_address_without_the_flag(workdir):
    out = cli(workdir, "dashboard", "--host", "0.0.0.0", "--duration", "1")
    assert out.returncode == 2 and "allow_remote=True" in out.stderr


def test_eval_runs_the_lm_saved_in_the_program_and_says_which_model_ran(workdir):
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        with dspex.runtime("local", cache_dir=workdir / "save-cache", log_level="error"):
            saved = dspex.LM("openai/saved-model", api_key=KEY, base_url=sim.base_url())
            dspex.Predict("question -> answer", lm=saved).save(workdir / "with_lm.json")
        # a loaded file's endpoint is not trusted (DSPy's rule: it could send the key elsewhere); the provider's
        # endpoint variable is
        out = cli(workdir, "eval", "with_lm.json", "--data", "dev.jsonl", "--metric", "task_metric:exact",
                  OPENAI_BASE_URL=sim.base_url())
        assert out.returncode == 0, out.stderr
        assert "model     openai/saved-model" in out.stdout
        assert {e.body["model"] for e in sim.log} == {"saved-model"} and len(sim.log) == 12
        refused = cli(workdir, "eval", "with_lm.json", "--data", "dev.jsonl", "--metric", "task_metric:exact",
                      "--base-url", sim.base_url())
        assert refused.returncode == 2 and "pass --model too" in refused.stderr


def test_a_missing_key_is_refused_before_any_request_and_failures_are_listed_by_type(workdir):
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "DSPEX_OPENAI_API_KEY")}
        out = subprocess.run([sys.executable, "-m", "dspex", "eval", "program.json", "--data", "dev.jsonl",
                              "--metric", "task_metric:exact", "--model", "openai/task", "--base-url",
                              sim.base_url()], cwd=workdir, capture_output=True, text=True, timeout=120,
                             env={**env, "DSPEX_CACHE_DIR": str(workdir / "cache")})
        assert out.returncode == 2 and "no API key: set OPENAI_API_KEY" in out.stderr and sim.log == []
        sim.set_faults(Faults(error_rates={400: 1.0}))
        failing = cli(workdir, "eval", "program.json", "--data", "dev.jsonl", "--metric", "task_metric:exact",
                      "--model", "openai/task", "--base-url", sim.base_url())
        assert failing.returncode == 1
        assert "failures by type:" in failing.stdout and "12 × InvalidRequest" in failing.stdout


def test_version():
    out = subprocess.run([sys.executable, "-m", "dspex", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"dspex {dspex.__version__}" != "dspex 0+unknown"


def test_optimize_says_what_bootstrap_scores_and_each_mipro_candidate_s_instruction(workdir):
    with ProviderServer(answer=fewshot_answer, api_key=KEY) as sim:
        common = ["--train", "train.jsonl", "--metric", "task_metric:exact", "--model", "openai/task",
                  "--base-url", sim.base_url(), "--out", "compiled.json"]
        boot = cli(workdir, "optimize", "program.json", "--optimizer", "bootstrap", *common, timeout=300)
        assert boot.returncode == 0, boot.stderr
        assert "baseline  not scored" in boot.stdout and "model openai/task" in boot.stdout
        mipro = cli(workdir, "optimize", "program.json", "--optimizer", "mipro", "--dev", "dev.jsonl", *common,
                    timeout=300)
        assert mipro.returncode == 0, mipro.stderr
        assert "self: Given the fields `question`, produce the fields `answer`." in mipro.stdout  # candidate 0's


def test_the_bash_completion_completes_commands_and_each_command_s_options(tmp_path):
    script = subprocess.run([sys.executable, "-m", "dspex", "completion", "bash"], capture_output=True, text=True,
                            timeout=60)
    assert script.returncode == 0 and "complete -o filenames -F _dspex dspex" in script.stdout
    (tmp_path / "dspex.bash").write_text(script.stdout)
    probe = ("source dspex.bash\n"
             "COMP_WORDS=(dspex opt); COMP_CWORD=1; _dspex; echo \"${COMPREPLY[*]}\"\n"
             "COMP_WORDS=(dspex optimize --run); COMP_CWORD=2; _dspex; echo \"${COMPREPLY[*]}\"\n")
    out = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["optimize", "--run-dir"], out.stderr
    zsh = subprocess.run([sys.executable, "-m", "dspex", "completion", "zsh"], capture_output=True, text=True,
                         timeout=60)
    assert zsh.stdout.startswith("autoload -U +X bashcompinit && bashcompinit")
