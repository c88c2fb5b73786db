"""LM clients: handles (``LM``), client actors with the resilience pipeline, the ledger, the cache."""

from .config import Breaker, LMConfig, Secret
from .embedder import Embedder
from .lm import LM
from .messages import ClientStatus, Completion, LedgerReport, UsageTotals
from .prices import DEFAULT_PRICES

__all__ = ["LM", "Embedder", "Breaker", "LMConfig", "Secret", "Completion", "UsageTotals", "LedgerReport", "ClientStatus",
           "DEFAULT_PRICES"]
