"""Prices in USD per million tokens (input, output), as the providers publish them.

Overridable: pass ``prices={"openai/my-model": (0.1, 0.4)}`` to ``dspex.runtime`` or ``price=(in, out)``
to ``dspex.LM``. Unknown models cost 0 and say so once in the log (``price_unknown``); ``local/...`` is free.
The published figures are in the provider registry (``dspex/providers.py``).
"""

from __future__ import annotations

import json

from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..providers import PROVIDERS, Price

DEFAULT_PRICES: dict[str, Price] = {f"{name}/{model}": price for name, spec in PROVIDERS.items()
                                    for model, price in spec.prices.items()}
"""``provider/model`` -> price, from each provider's entry in the registry (``dspex/providers.py``)."""


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


IMAGE_BOUND_TOKENS = 30_000  # the most one image part is billed (gpt-4o-mini's high detail at 2048x768 is ~25.5k)
REFERENCED_MEDIA_BOUND_TOKENS = 1_000_000  # audio / a file / a document named by URL or id: its size is unknown here


def _part_bound(part: Any) -> int:
    """The most one content part can be billed as: text by its bytes; an image at IMAGE_BOUND_TOKENS (plus
    its bytes); other media by their inline bytes (base64: more bytes than tokens), or, when only referenced,
    at REFERENCED_MEDIA_BOUND_TOKENS."""
    if not isinstance(part, Mapping):
        return len(str(part).encode("utf-8"))
    raw = len(json.dumps(part, default=str).encode("utf-8"))
    kind = part.get("type")
    if kind == "text":
        return len(str(part.get("text", "")).encode("utf-8"))
    if kind == "image_url":
        return raw + IMAGE_BOUND_TOKENS
    inline = "base64" in json.dumps(part, default=str)[:4096] or raw > 4096
    return raw if inline else raw + REFERENCED_MEDIA_BOUND_TOKENS


def prompt_tokens_bound(messages: Sequence[Mapping[str, Any]]) -> int:
    """The most prompt tokens ``messages`` can be billed as, whatever the tokenizer: none makes a token
    of less than one byte of UTF-8, plus each message's chat markup (content parts: :func:`_part_bound`;
    tool calls by their JSON). An attempt whose count never comes back is booked at this (and its
    ``max_tokens``), so the ledger never reports less than was billed."""
    total = MARKUP_TOKENS
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            total += sum(_part_bound(part) for part in content)
        else:
            total += len(str(content if content is not None else "").encode("utf-8"))
        if m.get("tool_calls"):
            total += len(json.dumps(m["tool_calls"], default=str).encode("utf-8"))
        total += MARKUP_TOKENS
    return total


__all__ = ["DEFAULT_PRICES", "price_for", "cost_of", "check_price", "prompt_tokens_bound", "Price"]
