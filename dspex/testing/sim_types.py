"""The provider simulator's data: what an ``answer`` function sees and returns, and what the server logs.

:class:`SimRequest` (a parsed request, any provider's), :class:`SimAnswer` and :class:`SimToolCall` (what the
simulated model answers), :class:`LoggedRequest` (one entry of the request log), and the simulator's own
measures: :func:`count_tokens` (its tokenizer), ``SIM_MEDIA_TOKENS`` and :func:`embed_text` (its embedding).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

EMBED_DIM = 64


def embed_text(text: str) -> list[float]:
    """The simulator's embedding: hashed bag of lower-cased words, unit length (texts sharing words are
    near each other: deterministic, documented, enough to test nearest-neighbour demos)."""
    import hashlib
    import math

    vector = [0.0] * EMBED_DIM
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % EMBED_DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def count_tokens(text: str) -> int:
    """The simulator's tokenizer: words and punctuation marks (deterministic, documented)."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@dataclass(frozen=True)
class SimToolCall:
    """One tool call the simulated model makes: the function's ``name`` and its ``args`` (an ``id`` is made
    up when empty: ``call_<n>`` / ``toolu_<n>``; Gemini's calls carry none, as Gemini's do not)."""

    name: str
    args: dict = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class SimAnswer:
    """What an ``answer`` function may return instead of a string: text and/or tool calls, rendered in each
    provider's format (OpenAI ``tool_calls``, Anthropic ``tool_use`` blocks, Gemini ``functionCall`` parts),
    streamed as each streams them."""

    text: str = ""
    tool_calls: tuple[SimToolCall, ...] = ()
    # the model's thinking, shown as each provider shows it when the request asks for it (Anthropic's
    # ``thinking`` block, Gemini's thought part with ``includeThoughts``; OpenAI-compatible servers'
    # ``reasoning_content`` always, as DeepSeek's does); it counts as completion tokens
    reasoning: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))


SIM_MEDIA_TOKENS = 100  # the simulator's prompt tokens for each image, audio clip, file or document


@dataclass(frozen=True)
class SimRequest:
    """A parsed request, as the ``answer`` function sees it. ``messages`` hold each turn's text (``role``,
    ``content``), an assistant's ``tool_calls`` (``[{"id", "name", "args"}]``), and tool results as
    ``role: "tool"`` turns (``tool_call_id``, ``name`` where the format says them); ``parts`` are the
    non-text content parts, each ``{"kind": "image" | "audio" | "file" | "document", "source": "base64" |
    "url" | "file", "mime_type", "role"}``; ``tools`` the declared functions (``name``, ``description``,
    ``parameters``) and ``tool_choice`` the format's own."""

    provider: str
    model: str
    messages: list[dict]
    system: str
    params: dict
    parts: tuple[dict, ...] = ()
    tools: tuple[dict, ...] = ()
    tool_choice: Any = None

    @property
    def tool_results(self) -> list[dict]:
        return [m for m in self.messages if m["role"] == "tool"]

    @property
    def prompt_text(self) -> str:
        return "\n".join([self.system, *(m["content"] for m in self.messages)]).strip()

    @property
    def last_user(self) -> str:
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""


@dataclass
class LoggedRequest:
    """One request as the server saw it: ``at`` is ``time.time()`` on arrival; secrets are removed."""

    at: float
    provider: str
    path: str
    headers: dict
    body: Any
    status: int = 0
    fault: str = "ok"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    method: str = "POST"


__all__ = ["SimRequest", "SimAnswer", "SimToolCall", "LoggedRequest", "count_tokens", "embed_text", "EMBED_DIM",
           "SIM_MEDIA_TOKENS"]
