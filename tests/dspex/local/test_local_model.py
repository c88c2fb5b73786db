"""The local provider with the real SmolLM2-135M model: a supervised model server process."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import dspex

from ...conftest import pids_titled, wait_until

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not built here (./run installs it)")


def _server_pids() -> list[int]:
    return pids_titled(b"dspex: model smollm2-135m (server)")


@pytest.mark.slow
def test_local_model_answers_through_the_pipeline_and_a_killed_server_is_restarted(tmp_path):
    events: list = []
    with dspex.runtime("local", cache_dir=tmp_path, log_level="error") as rt:
        rt.actors.subscribe(events.append)
        lm = dspex.LM("local/smollm2-135m", max_tokens=4, cache=False, retries=8, backoff_base=0.2, backoff_cap=1.0)
        qa = dspex.Predict("review -> sentiment", lm=lm, adapter=dspex.TextAdapter())
        first = qa(review="I loved it, works great, best purchase ever.")
        assert isinstance(first.sentiment, str) and first.sentiment  # a tiny model: any answer, really generated
        assert first.cost == 0.0 and first.usage.completion_tokens >= 1
        (pid,) = wait_until(_server_pids)
        os.kill(pid, signal.SIGKILL)
        time.sleep(2.5)  # the model actor checks every 2 s
        again = qa(review="Terrible. It broke after one day.")  # retried until the restarted server answers
        assert again.sentiment
        assert wait_until(lambda: any(e.kind == "restart" and "model" in e.child for e in events))
        assert wait_until(lambda: (p := _server_pids()) and p[0] != pid)
    assert wait_until(lambda: not _server_pids())  # closing the runtime stops the model process


def test_unknown_local_model_says_what_to_use(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level="error"):
        with pytest.raises(dspex.ConfigError, match="local/smollm2-135m"):
            dspex.LM("local/no-such-model")


def test_raw_continuations_skip_leading_blank_lines_and_end_at_the_next():
    from dspex.local.server import cut_raw

    assert cut_raw("\n\n positive\n\nReview: next") == (" positive", True)
    assert cut_raw("\n\n") == ("", False)  # nothing yet: keep generating
    assert cut_raw(" neg") == (" neg", False)


@pytest.mark.slow
def test_every_adapter_gets_an_answer_and_local_models_default_to_the_text_adapter(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path, log_level="error"):
        lm = dspex.LM("local/smollm2-135m", max_tokens=12, cache=False)
        sig = dspex.Signature("review -> sentiment")
        for adapter in (dspex.ChatAdapter(), dspex.JSONAdapter(), dspex.TextAdapter()):
            messages = adapter.format(sig, [], {"review": "Good case, excellent value."})
            comp = lm.request(messages, prompt_style=adapter.prompt_style)
            assert comp.text.strip(), type(adapter).__name__  # never an empty completion
        program = dspex.Predict(sig, lm=lm)
        assert isinstance(program.adapter_for(lm), dspex.TextAdapter)
        assert program(review="Terrible, it broke after one day.").sentiment
        assert lm.usage().requests == 4  # one request each: no re-ask, no JSON fallback


@pytest.mark.slow
def test_bootstrap_few_shot_lifts_the_real_local_model(tmp_path):
    from dspex.demo import correct, sentiment_split

    train, dev = sentiment_split(40, train_size=40)
    sig = dspex.Signature("review -> sentiment", instructions="Classify the sentiment of the review as positive or negative.")
    with dspex.runtime("local", cache_dir=tmp_path, log_level="error"):
        lm = dspex.LM("local/smollm2-135m", max_tokens=8)
        student = dspex.Predict(sig, lm=lm)
        zero = dspex.Evaluate(dev, correct, max_concurrency=2, progress=False).run(student).mean
        compiled = dspex.BootstrapFewShot(correct, max_bootstrapped_demos=4, max_labeled_demos=6).compile(
            student, trainset=train, max_concurrency=2)
        lifted = dspex.Evaluate(dev, correct, max_concurrency=2, progress=False).run(compiled).mean
    assert len(compiled.demos) == 6 and compiled.compile_report.stopped == "done"
    assert lifted >= zero + 0.15, (zero, lifted)


def test_the_server_sees_a_caller_that_hung_up_and_skips_its_request():
    import socket

    from dspex.local.server import _Handler, _Model

    here, there = socket.socketpair()
    handler = _Handler.__new__(_Handler)  # only its connection is used
    handler.connection = here
    try:
        assert not handler._caller_gone()  # connected, nothing sent: still waiting for its answer
        there.close()
        assert handler._caller_gone()
        model = _Model.__new__(_Model)  # no weights needed: a gone caller never reaches them
        model.lock = threading.Lock()
        assert model.complete({"messages": [{"role": "user", "content": "hi"}]}, handler._caller_gone) is None
    finally:
        here.close()
