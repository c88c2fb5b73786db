"""One event loop per process for the asyncio engine: its HTTP sessions, its lease channels and the tasks of
the evaluations that run on it live on this loop, in one daemon thread (``Engines.loop``).

One loop, not one per evaluation: an aiohttp session belongs to the loop it was made on, so one long-lived
loop keeps each client's keep-alive connections across evaluations and closes them once, at the runtime's
end. A coroutine started from another loop or thread hops onto it with :meth:`EventLoop.submit`, in a copy
of the caller's context (its ``dspex.context`` overrides, run scope and callbacks go along).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import threading
from typing import Any, Coroutine

import structlog

from supervision import Shutdown

log = structlog.get_logger("dspex")

STOP_TIMEOUT = 10.0  # seconds the loop's last tasks have to end when the runtime closes
SYNC_THREADS = 64  # the loop's pool for sync code called from tasks (asyncio.to_thread): a module without aforward


class LoopState(str, enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


class EventLoop:
    """A loop in a daemon thread, started on first use (:meth:`get`), stopped by :meth:`close`."""

    def __init__(self, name: str = "dspex-loop") -> None:
        self.name = name
        self.state = LoopState.NEW
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sync: concurrent.futures.ThreadPoolExecutor | None = None

    def get(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if it was not)."""
        with self._lock:
            if self.state is LoopState.CLOSED:
                raise Shutdown("the runtime's event loop is closed (the runtime was closed): open a new runtime")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._sync = concurrent.futures.ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix=f"{self.name}-sync")
                loop.set_default_executor(self._sync)
                ready = threading.Event()
                thread = threading.Thread(target=self._run, args=(loop, ready), name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread, self.state = loop, thread, LoopState.RUNNING
            return self._loop

    def running_here(self) -> bool:
        """The calling code runs on this loop (its thread)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, Any],
               context: contextvars.Context | None = None) -> concurrent.futures.Future:
        """Run ``coro`` as a task on the loop, in ``context`` (default: a copy of the caller's)."""
        loop = self.get()
        ctx = context if context is not None else contextvars.copy_context()
        done: concurrent.futures.Future = concurrent.futures.Future()

        def start() -> None:
            if done.cancelled():  # given up before it started
                coro.close()
                return
            task = ctx.run(loop.create_task, coro)  # the task runs in ctx (Python 3.10 has no context=)

            def settle(t: asyncio.Task) -> None:
                try:
                    if t.cancelled():
                        done.set_exception(concurrent.futures.CancelledError())
                    elif t.exception() is not None:
                        done.set_exception(t.exception())  # type: ignore[arg-type]
                    else:
                        done.set_result(t.result())
                except concurrent.futures.InvalidStateError:
                    return  # the caller gave up first (its cancel reached the task): nobody reads the outcome

            task.add_done_callback(settle)
            done.add_done_callback(lambda f: loop.call_soon_threadsafe(task.cancel) if f.cancelled() else None)

        loop.call_soon_threadsafe(start)
        return done

    def close(self) -> None:
        """Cancel what still runs, let it end (``STOP_TIMEOUT``), stop the loop and its thread."""
        with self._lock:
            loop, thread, self._loop, self.state = self._loop, self._thread, None, LoopState.CLOSED
        if loop is None or thread is None:
            return

        async def finish() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT) if tasks else None
            await loop.shutdown_asyncgens()

        if thread is threading.current_thread():  # closed from a task of its own: it stops when that returns
            loop.call_soon(loop.stop)
            return
        try:
            asyncio.run_coroutine_threadsafe(finish(), loop).result(STOP_TIMEOUT + 5)
        except concurrent.futures.TimeoutError:  # the loop is stopped below either way
            log.warning("event_loop_stopped_late", loop=self.name, waited_s=STOP_TIMEOUT + 5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        if self._sync is not None:  # a sync call still running ends on its own; nothing new starts
            self._sync.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def __repr__(self) -> str:
        return f"<EventLoop {self.name} {self.state.value}>"


__all__ = ["EventLoop", "LoopState"]
