"""Actors of the supervision tour (actor classes live in importable modules, never __main__)."""

from __future__ import annotations

import os

from supervision import GenServer


class Worker(GenServer):
    """Counts calls; crashes on request."""

    def init(self, name: str = "worker") -> None:
        self.name, self.calls = name, 0

    def handle_call(self, request):
        if request == "crash":
            raise RuntimeError(f"{self.name} was asked to crash")
        if request == "pid":
            return os.getpid()
        self.calls += 1
        return f"{self.name}: call #{self.calls} in pid {os.getpid()}"

    def terminate(self, reason: str) -> None:
        print(f"    terminate({reason!r}) in {self.name}", flush=True)
