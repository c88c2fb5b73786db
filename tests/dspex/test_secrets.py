"""Keys in user text (issue 20, section 6): a key that a user's metric puts in its exception message is
masked in everything dspex writes: the rows' errors, the journal, the structlog output, the dashboard's
JSON. The key here is not key-shaped (no ``sk-`` prefix): the log regex would not catch it, only the
known keys (dspex.scrub) do."""

from __future__ import annotations

import json

import requests
import structlog

import dspex
from dspex.evaluate.result import MetricError
from dspex.logs import configure_logging
from dspex.scrub import known_keys, scrub_text
from dspex.testing import ProviderServer

from .scripted import chat

KEY = "acme-live-7f3a9c2e5b1d4f60a8e2c4d6"


def fragments(text: str) -> list[str]:
    """Every run of 8 or more characters of the key found in ``text`` (any case)."""
    low = text.lower()
    return [KEY[i:i + 8] for i in range(len(KEY) - 7) if KEY[i:i + 8].lower() in low]


def leaky_metric(example, prediction, trace=None):
    raise ValueError(f"bad credentials {KEY} for {example.question}")


def test_a_metric_that_puts_the_key_in_its_error_leaks_it_nowhere(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    journal = runs / "eval.jsonl"
    configure_logging("warning")  # dspex's own set-up, on the captured stderr
    try:
        with ProviderServer(answer=lambda req: chat(answer="X"), api_key=KEY) as sim, \
                dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as rt:
            board = rt.dashboard(runs_dir=runs)
            lm = dspex.LM("openai/m", api_key=KEY, base_url=sim.base_url(), cache=False, rpm=None)
            devset = [dspex.Example(question=f"q{i}", answer="X").with_inputs("question") for i in range(4)]
            result = dspex.Evaluate(devset, leaky_metric, progress=False, journal=journal).run(
                dspex.Predict("question -> answer", lm=lm))
            failed = result.rows[0].error
            structlog.get_logger("dspex").warning("row_failed", error=str(failed), row=repr(failed))
            try:
                leaky_metric(devset[0], None)
            except ValueError:  # the original exception, rendered by structlog itself
                structlog.get_logger("dspex").exception("metric_failed")

            session = requests.Session()
            assert session.get(board.url).status_code == 200
            base = board.url.split("?")[0]
            answers = [session.get(base + "api/state").text, session.get(base + "api/past").text,
                       session.get(base + "api/past/eval.jsonl").text]
            runs_shown = json.loads(answers[0])["runs"]
            answers += [session.get(base + f"api/runs/{r['run']}/rows").text for r in runs_shown if "run" in r]
            answers += [session.get(base + f"api/runs/{r['run']}/rows/0").text for r in runs_shown if "run" in r]
            # a journal written before keys were masked: the dashboard masks it when it shows it
            old = {"index": 0, "example": {"question": "q"}, "prediction": None, "usage": [0, 0], "cost": 0.0,
                   "score": 0.0, "attempts": 1, "worker": "main", "trace": [],
                   "error": {"type": "ValueError", "message": f"bad {KEY}"}}
            (runs / "old.jsonl").write_text(json.dumps(old) + "\n")
            answers.append(session.get(base + "api/past/old.jsonl").text)
    finally:
        structlog.reset_defaults()
    assert len(sim.log) == 4 and len(result.rows) == 4 and all(r.failed for r in result.rows)
    for row in result.rows:  # the error keeps its type and says what happened, without the key
        assert isinstance(row.error, MetricError) and "raised ValueError: bad credentials *** for q" in str(row.error)
        assert not fragments(str(row.error) + repr(row.error)), row.error
    written = journal.read_text()
    assert written.count("bad credentials ***") == 4 and not fragments(written)
    assert "eval.jsonl" in answers[1] and "bad credentials ***" in answers[2] and "bad ***" in answers[-1]
    for answer in answers:
        assert not fragments(answer), answer[:300]
    logged = capsys.readouterr().err
    assert "row_failed" in logged and "metric_failed" in logged and "bad credentials ***" in logged
    assert not fragments(logged), logged


def test_the_known_keys_are_the_environment_s_and_the_live_secrets(monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", "env-key-0123456789abcdef")
    monkeypatch.setenv("SHORT_API_KEY", "local")  # not a secret: masking every "local" would destroy text
    secret, twin = (dspex.clients.Secret("vault-key-abcdef0123456789") for _ in range(2))
    assert {"env-key-0123456789abcdef", "vault-key-abcdef0123456789"} <= known_keys()
    assert "local" not in known_keys()
    assert scrub_text("a local env-key-0123456789abcdef and VAULT-KEY-ABCDEF0123") == "a local *** and ***"
    del secret
    assert "vault-key-abcdef0123456789" in known_keys()  # its twin still holds it
    del twin  # a key leaves with its last Secret
    assert "vault-key-abcdef0123456789" not in known_keys()
