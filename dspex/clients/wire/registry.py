"""The wire formats by name: a provider's registry entry (``dspex/providers.py``) names one of them.

A new wire format is one module with its :class:`WireFormat` subclass, and its instance added here.
"""

from __future__ import annotations

from ...providers import PROVIDERS
from .anthropic import Anthropic
from .azure import Azure
from .bedrock import Bedrock
from .vertex import Vertex
from .base import WireFormat
from .colbert import ColBERT
from .embeddings import Embeddings
from .gemini import Gemini
from .ollama import OllamaChat, OllamaGenerate
from .openai import Local, OpenAI


WIRE_FORMATS: dict[str, WireFormat] = {w.name: w for w in (OpenAI(), Anthropic(), Gemini(), Local(), ColBERT(),
                                                  Embeddings(), Azure(), OllamaChat(), OllamaGenerate(),
                                                  Bedrock(), Vertex())}


def wire_for(provider: str) -> WireFormat:
    """The wire format a provider speaks (its registry entry names it)."""
    return WIRE_FORMATS[PROVIDERS[provider].wire]
