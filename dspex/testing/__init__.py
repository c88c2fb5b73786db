"""Test doubles of the outside world that dspex ships: a fault-injecting LM provider server.

Nothing here is used by dspex at run time; it exists so tests and benchmarks talk real HTTP.
Names are loaded on first use, so ``python -m dspex.testing.provider_server`` runs cleanly.
"""

from typing import Any

__all__ = ["ProviderServer", "Faults", "SimRequest", "SimAnswer", "SimToolCall", "LoggedRequest", "count_tokens",
           "FAULT_KINDS"]


def __getattr__(name: str) -> Any:
    if name in ("Faults", "FAULT_KINDS"):
        from . import faults

        return getattr(faults, name)
    if name in __all__:
        from . import provider_server

        return getattr(provider_server, name)
    raise AttributeError(f"module 'dspex.testing' has no attribute {name!r}")
