"""GenServers used by the tests (importable by actor processes, never __main__)."""

from __future__ import annotations

import os
import queue
import time

from supervision import GenServer, NoReply


class Counter(GenServer):
    def init(self, start: int = 0, fail: bool = False) -> None:
        if fail:
            raise RuntimeError("init refused")
        self.n = start

    def handle_call(self, request):
        if request == "incr":
            self.n += 1
            return self.n
        if request == "get":
            return self.n
        if request == "pid":
            return os.getpid()
        if request == "netns":
            return os.readlink("/proc/self/ns/net")
        if request == "crash":
            raise ValueError("boom")
        if request == "noreply":
            return NoReply
        if request == "stop":
            self.stop("normal")
            return "stopping"
        if isinstance(request, tuple) and request[0] == "sleep":
            time.sleep(request[1])
            return "slept"
        raise KeyError(request)

    def handle_cast(self, message):
        if message == "reset":
            self.n = 0
        elif message == "crash":
            raise RuntimeError("cast crash")


class Recorder(GenServer):
    """Appends its terminate reason to a file, to observe terminate from outside the process."""

    def init(self, path: str, tag: str) -> None:
        self.path, self.tag = path, tag

    def handle_call(self, request):
        if request == "crash":
            raise ValueError("recorder boom")
        if request == "pid":
            return os.getpid()
        return self.tag

    def terminate(self, reason: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{self.tag}:{reason}\n")


class SlowStop(GenServer):
    """terminate takes long: a shutdown timeout must kill it."""

    def handle_call(self, request):
        return os.getpid()

    def terminate(self, reason: str) -> None:
        time.sleep(30)


class Linked(GenServer):
    """Owns a helper thread started with ``spawn_thread``: told through a queue, it raises, is
    interrupted or returns. Appends each terminate reason to ``path``; with ``raise_on_stop`` its
    terminate makes the thread raise while the actor is already exiting."""

    def init(self, path: str, raise_on_stop: bool = False) -> None:
        self.path, self.raise_on_stop = path, raise_on_stop
        self.orders: queue.Queue = queue.Queue()
        self.spawn_thread(self._helper, name="helper")

    def _helper(self) -> None:
        while True:
            order = self.orders.get()
            if order == "raise":
                raise RuntimeError("thread boom")
            if order == "interrupt":
                raise KeyboardInterrupt("thread interrupted")
            if order == "return":
                return

    def handle_call(self, request):
        if request == "pid":
            return os.getpid()
        self.orders.put(request)
        return "told"

    def terminate(self, reason: str) -> None:
        with open(self.path, "a") as fh:
            fh.write(f"{reason}\n")
        if self.raise_on_stop:
            self.orders.put("raise")
            time.sleep(0.2)  # the thread fails while this actor is exiting


class Later(GenServer):
    """Answers ``("after", s, value)`` ``s`` seconds later (a deferred reply, by a timer)."""

    def handle_call(self, request):
        if request == "now":
            return "now"
        if request == "crash":
            raise ValueError("boom")
        _, seconds, value = request
        self.send_after(seconds, ("answer", self.current_call, value))
        return NoReply

    def handle_info(self, message):
        _, token, value = message
        self.reply(token, value)
