"""LM clients: handles (``LM``), client actors with the resilience pipeline, the ledger, the cache."""

from .config import Breaker, LMConfig, Secret
from .lm import LM
from .messages import ClientStatus, Completion, LedgerReport, UsageTotals
from .prices import DEFAULT_PRICES

__all__ = ["LM", "Breaker", "LMConfig", "Secret", "Completion", "UsageTotals", "LedgerReport", "ClientStatus",
           "DEFAULT_PRICES"]
