"""``dspex.History``: earlier turns of a conversation, as an input field.

Each message is a dict keyed by the signature's field names (``{"question": ..., "answer": ...}``); the
adapter renders every message as a user turn (its input fields) and an assistant turn (its output fields)
before the current one, instead of showing the history as a field value.
"""

from __future__ import annotations

from typing import Any

import pydantic


class History(pydantic.BaseModel):
    """``History(messages=[{"question": "...", "answer": "..."}, ...])``; a Prediction's fields can be
    spread into a message: ``{"question": q, **prediction}``."""

    messages: list[dict[str, Any]]

    model_config = pydantic.ConfigDict(frozen=True, str_strip_whitespace=True, validate_assignment=True,
                                       extra="forbid")
