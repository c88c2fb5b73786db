"""Rate and reset headers: how long a provider asks us to wait, and the limits it advertises.

``Retry-After`` (RFC 9110) is every format's (``WireFormat.retry_after``); OpenAI's and Google's durations,
Anthropic's RFC 3339 reset times and a limit advertised in three headers (limit, remaining, reset) are read here
for the formats that send them. An unreadable value is None, never an error.
"""

from __future__ import annotations

import email.utils
import re
import time
from datetime import datetime
from typing import Any, Mapping

from supervision.resilience.adaptive import Advert


_DURATION = re.compile(r"(?P<num>\d+(?:\.\d+)?)(?P<unit>ms|h|m|s)")


def parse_duration(text: str) -> float | None:
    """OpenAI/Google style durations: ``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"``."""
    text = text.strip()
    if not text:
        return None
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        pos = match.end()
        total += float(match["num"]) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match["unit"]]
    return total if pos == len(text) else None


def _advert(headers: Mapping[str, str], limit: str, remaining: str, reset: str,
            parse_reset: Any) -> Advert | None:
    """One advertised limit from three headers; unreadable values are left out (never an error)."""
    values = [_number(headers.get(limit)), _number(headers.get(remaining))]
    raw_reset = headers.get(reset)
    reset_s = parse_reset(raw_reset) if raw_reset else None
    if values[0] is None or values[0] <= 0:
        return None
    return Advert(values[0], values[1], reset_s)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number and number >= 0 and number != float("inf") else None


def parse_retry_after(value: str) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date (RFC 9110); None when unreadable."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_timestamp(value: str) -> float | None:
    """An RFC 3339 reset time (Anthropic) as seconds from now."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - time.time())
