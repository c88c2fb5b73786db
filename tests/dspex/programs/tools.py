"""A stateful tool as a GenServer (importable by actor processes)."""

from __future__ import annotations

from supervision import GenServer


class Tally(GenServer):
    def init(self) -> None:
        self.total = 0

    def handle_call(self, request):
        if request["n"] < 0:
            raise ValueError("negative amounts are not allowed")
        self.total += request["n"]
        return self.total
