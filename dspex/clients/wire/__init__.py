"""Wire formats: how a provider wants a chat request, and where its answer and token counts are.

A provider's entry in the registry (``dspex/providers.py``) names its wire format; this package holds
one stateless class per format (``WireFormat`` subclasses), found by name in :data:`WIRE_FORMATS`. One
format is not chat: ``colbert``, a ColBERTv2 search server (``dspex.ColBERTv2``'s searches, on the same pipeline).

Messages come in the chat-completions shape (content parts, ``tool_calls``, ``role: "tool"`` results, checked
by :func:`check_message`); ``tools`` / ``tool_choice`` in OpenAI's function shape. Each format renders them as
its provider's (Anthropic image/document/tool_use/tool_result blocks, Gemini inline_data/file_data/
functionCall/functionResponse parts) and gives an answer's tool calls back in OpenAI's shape, as the
``tool_calls`` extra, streamed or whole.

One module a concept: ``base`` (:class:`Parsed`, :class:`StreamDelta`, :class:`WireError`, token counts, native
reasoning budgets, :class:`WireFormat`), ``parts`` (content parts and tool calls), ``headers`` (rate and reset
headers), one module a format (``openai`` with ``local``, ``anthropic``, ``gemini``, ``colbert``) and
``registry`` (:data:`WIRE_FORMATS`, :func:`wire_for`). Every name is importable from here.
"""

from __future__ import annotations

from .anthropic import Anthropic
from .base import (MAX_TOKEN_COUNT, OFF, THINKING_BUDGET, Parsed, StreamDelta, WireError, WireFormat, checked,
                   thinking_budget, token_count, with_reasoning)
from .colbert import ColBERT
from .gemini import Gemini
from .headers import parse_duration, parse_retry_after, parse_timestamp
from .openai import Local, OpenAI
from .parts import (IMAGE_TOKENS, MEDIA_TOKENS, MESSAGE_ROLES, PART_TYPES, check_content, check_message, content_text,
                    estimate_prompt_tokens, openai_calls, parse_data_url)
from .registry import WIRE_FORMATS, wire_for

__all__ = ["WireFormat", "OpenAI", "Anthropic", "Gemini", "Local", "ColBERT", "WIRE_FORMATS", "wire_for", "Parsed",
           "WireError", "StreamDelta", "check_message", "check_content", "content_text", "estimate_prompt_tokens",
           "openai_calls", "parse_data_url", "IMAGE_TOKENS", "MEDIA_TOKENS", "PART_TYPES", "MESSAGE_ROLES",
           "token_count", "MAX_TOKEN_COUNT", "parse_duration", "parse_retry_after", "parse_timestamp", "checked",
           "thinking_budget", "with_reasoning", "THINKING_BUDGET", "OFF"]
