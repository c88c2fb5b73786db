"""asyncify (a sync program awaited from async code, bounded, in the caller's context) and syncify."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

import dspex
from dspex.programs import settings
from dspex.utils import callback_context
from dspex.utils.asyncify import asyncify, get_async_max_workers, get_limiter
from dspex.utils.syncify import run_async, syncify

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("test_asyncify_var", default="unset")


@pytest.fixture(autouse=True)
def dspex_settings(monkeypatch):
    """The settings reader dspex registers (set here too, so this file does not depend on the wiring)."""
    monkeypatch.setattr(callback_context, "_settings_reader", settings.setting)


def test_one_limiter_sized_by_the_setting():
    limiter = get_limiter()
    assert limiter.total_tokens == 8 and get_async_max_workers() == 8
    with dspex.context(async_max_workers=3):
        assert get_limiter() is limiter and limiter.total_tokens == 3
    assert get_limiter(5) is limiter and limiter.total_tokens == 5
    assert get_limiter().total_tokens == 8


def test_a_bad_size_is_a_config_error():
    with pytest.raises(dspex.ConfigError, match="positive integer"):
        get_limiter(0)
    with dspex.context(async_max_workers="many"):
        with pytest.raises(dspex.ConfigError, match="async_max_workers"):
            get_limiter()


def test_calls_run_in_threads_at_most_async_max_workers_at_once():
    running, peak, lock = [0], [0], threading.Lock()
    loop_thread = threading.current_thread()

    def work(x, *, wait):
        assert threading.current_thread() is not loop_thread
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(wait)
        with lock:
            running[0] -= 1
        return x * 2

    async def main():
        with dspex.context(async_max_workers=3):
            start = time.monotonic()
            results = await asyncio.gather(*[asyncify(work)(i, wait=0.1) for i in range(9)])
            return results, time.monotonic() - start

    results, took = asyncio.run(main())
    assert results == [i * 2 for i in range(9)]
    assert peak[0] == 3 and 0.28 < took < 1.5  # three waves of three


def test_the_callers_context_reaches_the_thread():
    def program(**inputs):
        seen = (VAR.get(), settings.setting("max_errors"), inputs)
        VAR.set("changed in the thread")
        return seen

    async def main():
        VAR.set("caller")
        with dspex.context(max_errors=4):
            got = await asyncify(program)(q=1)
        return got, VAR.get()

    assert asyncio.run(main()) == (("caller", 4, {"q": 1}), "caller")


def test_a_module_is_asyncified_and_errors_propagate():
    class Double(dspex.Module):
        def forward(self, x):
            if x < 0:
                raise ValueError("negative")
            return x * 2

    async def main():
        run = asyncify(Double())
        assert await run(x=21) == 42
        with pytest.raises(ValueError, match="negative"):
            await run(x=-1)

    asyncio.run(main())


class AsyncAdd(dspex.Module):
    def __init__(self):
        self.predict = dspex.Predict("x -> y")

    async def aforward(self, x):
        await asyncio.sleep(0.01)
        if x is None:
            raise KeyError("no x")
        return (x + 1, VAR.get())


def test_syncify_in_place_adds_a_forward():
    program = AsyncAdd()
    assert syncify(program) is program
    token = VAR.set("caller")
    try:
        assert program(x=1) == (2, "caller") and program.forward(5) == (6, "caller")
    finally:
        VAR.reset(token)
    with pytest.raises(KeyError, match="no x"):
        program(x=None)
    copied = program.deepcopy()
    assert copied(x=2) == (3, "unset") and copied.forward.__self__ is copied


def test_syncify_with_a_wrapper_module():
    program = AsyncAdd()
    wrapper = syncify(program, in_place=False)
    assert isinstance(wrapper, dspex.Module) and wrapper.program is program and "forward" not in vars(program)
    assert wrapper(x=1) == (2, "unset") and wrapper.forward(2) == (3, "unset")
    assert [name for name, _ in wrapper.named_predictors()] == ["program.predict"]  # optimizers find them
    assert type(syncify(AsyncAdd(), in_place=False)) is type(wrapper)


def test_syncify_needs_an_aforward():
    class SyncOnly(dspex.Module):
        def forward(self, x):
            return dspex.Prediction(y=x)

    with pytest.raises(TypeError, match="aforward"):
        syncify(SyncOnly())


def test_run_async_inside_a_running_event_loop():
    async def inner():
        await asyncio.sleep(0.01)
        return VAR.get()

    async def main():
        VAR.set("outer task")
        return run_async(inner())  # a sync call made from async code (a notebook cell, an async caller)

    assert asyncio.run(main()) == "outer task"
    assert run_async(inner()) == "unset"
