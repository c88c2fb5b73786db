"""Prices in USD per million tokens (input, output), as the providers publish them.

Overridable: pass ``prices={"openai/my-model": (0.1, 0.4)}`` to ``dspex.runtime`` or ``price=(in, out)``
to ``dspex.LM``. Unknown models cost 0 and say so once in the log (``price_unknown``); ``local/...`` is free.
Figures as published in 2025; check your provider's page before relying on a budget.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import ConfigError

Price = tuple[float, float]

DEFAULT_PRICES: dict[str, Price] = {
    "openai/gpt-4o-mini": (0.15, 0.60),
    "openai/gpt-4o": (2.50, 10.00),
    "openai/gpt-4.1": (2.00, 8.00),
    "openai/gpt-4.1-mini": (0.40, 1.60),
    "openai/gpt-4.1-nano": (0.10, 0.40),
    "openai/o3-mini": (1.10, 4.40),
    "anthropic/claude-3-5-haiku-latest": (0.80, 4.00),
    "anthropic/claude-3-5-sonnet-latest": (3.00, 15.00),
    "anthropic/claude-sonnet-4-0": (3.00, 15.00),
    "gemini/gemini-2.0-flash": (0.10, 0.40),
    "gemini/gemini-1.5-flash": (0.075, 0.30),
    "gemini/gemini-1.5-pro": (1.25, 5.00),
}


def price_for(model: str, table: Mapping[str, Price] | None = None) -> Price | None:
    """The (input, output) price of ``provider/model``; a table entry may end in ``*`` as a prefix."""
    merged = {**DEFAULT_PRICES, **(table or {})}
    if model in merged:
        return merged[model]
    for name, price in merged.items():
        if name.endswith("*") and model.startswith(name[:-1]):
            return price
    return None


def check_price(price: object) -> Price:
    if (not isinstance(price, (tuple, list)) or len(price) != 2
            or not all(isinstance(p, (int, float)) and p >= 0 for p in price)):
        raise ConfigError(f"a price is (usd_per_million_input, usd_per_million_output), both >= 0; got {price!r}")
    return (float(price[0]), float(price[1]))


def cost_of(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float:
    if price is None:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


MARKUP_TOKENS = 8  # per message, and once for the reply: the chat markup a provider bills (OpenAI's is 3-4)


def prompt_tokens_bound(messages: Sequence[Mapping[str, Any]]) -> int:
    """The most prompt tokens ``messages`` can be billed as, whatever the tokenizer: none makes a token
    of less than one byte of UTF-8, plus each message's chat markup. An attempt whose count never comes
    back is booked at this (and its ``max_tokens``), so the ledger never reports less than was billed."""
    return sum(len(str(m.get("content", "")).encode("utf-8")) + MARKUP_TOKENS for m in messages) + MARKUP_TOKENS


__all__ = ["DEFAULT_PRICES", "price_for", "cost_of", "check_price", "prompt_tokens_bound", "Price"]
