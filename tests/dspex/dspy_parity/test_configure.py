"""DSPy's configuration habits, written as DSPy users write them, run with ``import dspex as dspy``."""

from __future__ import annotations

import asyncio
import threading

import pytest

import dspex as dspy
from dspex.testing import ProviderServer

from ..scripted import chat

KEY = "sk-test-parity-123456"


def answer(req):
    return chat(answer=f"{req.params.get('temperature')}:{req.last_user.split(chr(10))[1]}")


@pytest.fixture
def server():
    with ProviderServer(answer=answer, api_key=KEY) as srv:
        yield srv


@pytest.fixture
def rt(tmp_path):
    with dspy.runtime("local", cache_dir=tmp_path, log_level=None) as runtime:
        yield runtime


def test_line_one_of_every_tutorial(server, rt):
    lm = dspy.LM("openai/gpt-4o-mini", api_base=server.base_url(), api_key=KEY, cache=False)
    dspy.configure(lm=lm)
    qa = dspy.Predict("question -> answer")
    assert qa(question="What is 2+2?").answer == "0.0:What is 2+2?"


def test_context_overrides_for_one_block_and_is_right_across_threads_and_tasks(server, rt):
    base = dspy.LM("openai/m", api_base=server.base_url(), api_key=KEY, cache=False)
    hot = base.copy(temperature=1.0)  # another handle of the same client
    dspy.configure(lm=base)
    qa = dspy.Predict("question -> answer")
    seen = {}

    def in_thread(name, lm):
        with dspy.context(lm=lm):
            seen[name] = qa(question=name).answer

    threads = [threading.Thread(target=in_thread, args=(f"t{i}", hot if i % 2 else base)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {k: v.split(":")[0] for k, v in seen.items()} == {f"t{i}": "1.0" if i % 2 else "0.0" for i in range(6)}

    async def task(name, lm):
        with dspy.context(lm=lm):
            await asyncio.sleep(0.01)
            return (await qa.acall(question=name)).answer

    async def both():
        return await asyncio.gather(task("a", hot), task("b", base))

    assert [a.split(":")[0] for a in asyncio.run(both())] == ["1.0", "0.0"]
    assert qa(question="after").answer.startswith("0.0")  # the block is over
    clients = [c.id for c in rt.clients.which_children() if c.id != "ledger"]
    assert len(clients) == 1  # both handles share one client actor and its limits


def test_a_string_lm_and_clear_errors(server, rt, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    qa = dspy.Predict("question -> answer", lm="openai/m")
    with pytest.raises(dspy.ConfigError):  # a real provider URL would be needed: say so, never AttributeError
        dspy.Predict("question -> answer", lm=42)(question="x")
    with pytest.raises(dspy.ConfigError, match="has no LM"):
        dspy.Predict("question -> answer")(question="x")
    dspy.configure(track_usage=True)  # DSPy's switch; dspex always tracks usage
    assert dspy.settings.track_usage is True and dspy.settings["track_usage"] is True
    with pytest.raises(dspy.ConfigError, match="retriever"):
        dspy.configure(rm=object())
    with pytest.raises(dspy.ConfigError, match="not a setting"):
        dspy.configure(temprature=0.5)
    dspy.configure(track_usage=False)
    with pytest.raises(dspy.ConfigError, match="base_url= or api_base="):
        dspy.LM("openai/m", base_url="http://127.0.0.1:1/v1", api_base="http://127.0.0.1:2/v1")
    assert qa.lm == "openai/m"


def test_without_any_runtime_the_process_default_runtime_starts(server):
    from dspex.clients.host import OPEN

    lm = dspy.LM("openai/m", api_base=server.base_url(), api_key=KEY, cache=False)
    try:
        assert dspy.Predict("question -> answer", lm=lm)(question="hi").answer == "0.0:hi"
        assert OPEN.default() is dspy.current_runtime() and dspy.current_runtime().actors.is_local
    finally:
        OPEN.default().close()  # as at interpreter exit


def test_worker_processes_get_the_lm_this_process_resolved(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with dspy.runtime("multiproc", cache_dir=tmp_path, log_level=None):
        with dspy.context(lm=dspy.LM("openai/m", api_base=server.base_url(), cache=False)):
            data = [dspy.Example(question=f"q{i}", answer=f"0.0:q{i}").with_inputs("question") for i in range(8)]
            result = dspy.Evaluate(data, lambda ex, pred, trace=None: pred.answer == ex.answer, workers=2,
                                   progress=False).run(dspy.Predict("question -> answer"))
    assert result.score == 100.0 and {r.worker for r in result.rows} <= {"worker-1", "worker-2"}


def test_two_handles_with_different_retries_share_one_client_and_keep_their_own(tmp_path):
    from dspex.testing import Faults

    with ProviderServer(answer="ok", api_key=KEY, faults=Faults(error_rates={500: 1.0}, retry_after=0.01)) as sim, \
            dspy.runtime("local", cache_dir=tmp_path, log_level="error"):
        patient = dspy.LM("openai/m", api_base=sim.base_url(), api_key=KEY, cache=False, num_retries=3, rpm=None)
        hasty = patient.copy(num_retries=0)
        for lm, attempts in ((hasty, 1), (patient, 4)):
            before = len(sim.log)
            with pytest.raises(dspy.ProviderError):
                lm.request("x")
            assert len(sim.log) - before == attempts
        assert hasty.status().client == patient.status().client
