"""GenServers used by the tests (importable by actor processes, never __main__)."""

from __future__ import annotations

import os
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
