"""Test doubles of the outside world that dspex ships: a fault-injecting LM provider server.

Nothing here is used by dspex at run time; it exists so tests and benchmarks talk real HTTP.
"""

from .faults import FAULT_KINDS, Faults
from .provider_server import LoggedRequest, ProviderServer, SimRequest, count_tokens

__all__ = ["ProviderServer", "Faults", "SimRequest", "LoggedRequest", "count_tokens", "FAULT_KINDS"]
