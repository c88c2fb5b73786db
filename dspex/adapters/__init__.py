"""Adapters: render a signature call as messages, parse the LM's text back into typed values."""

from .base import Adapter
from .chat import ChatAdapter
from .json_adapter import JSONAdapter
from .text import TextAdapter

# The adapters by name: what a saved program, a search over adapters and an LM's preference name.
# Adding an adapter is one entry here.
ADAPTERS: dict[str, type[Adapter]] = {"ChatAdapter": ChatAdapter, "JSONAdapter": JSONAdapter,
                                      "TextAdapter": TextAdapter}

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "TextAdapter", "ADAPTERS"]
