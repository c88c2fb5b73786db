"""A pickle that records where it was loaded: evidence for the trust-model test (tests/supervision/test_node.py)."""

from __future__ import annotations

import os


def touch(marker: str) -> str:
    """Called when the pickle is loaded: writes ``<marker>.<network namespace of this process>``."""
    ns = os.readlink("/proc/self/ns/net").strip("net:[]")
    with open(f"{marker}.{ns}", "w") as fh:
        fh.write(str(os.getpid()))
    return "loaded"


class LoadMarker:
    """Unpickling this runs ``touch(marker)`` in the receiving process: what any peer could send."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return touch, (self.marker,)
