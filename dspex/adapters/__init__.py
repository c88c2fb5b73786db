"""Adapters: render a signature call as messages, parse the LM's text back into typed values."""

from .base import Adapter
from .chat import ChatAdapter
from .json_adapter import JSONAdapter
from .text import TextAdapter

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "TextAdapter"]
