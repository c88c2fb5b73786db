"""LM clients: handles (``LM``), the request pipeline (``pipeline``) each handle sends through, the
per-process engines behind it (``engines``), client actors owning the shared limits, the ledger, the
cache, the wire formats of the providers in the registry (``dspex/providers.py``)."""

from .config import Breaker, LMConfig, Secret
from .embedder import Embedder
from .lm import LM
from .messages import ClientStatus, Completion, LedgerReport, UsageTotals
from .prices import DEFAULT_PRICES

__all__ = ["LM", "Embedder", "Breaker", "LMConfig", "Secret", "Completion", "UsageTotals", "LedgerReport", "ClientStatus",
           "DEFAULT_PRICES"]
