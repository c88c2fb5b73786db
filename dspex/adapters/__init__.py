"""Adapters: render a signature call as messages, parse the LM's text back into typed values.

DSPy's module paths: ``dspex.adapters.base.Adapter``, ``.chat_adapter.ChatAdapter`` (with
``FieldInfoWithName``, ``field_header_pattern``), ``.json_adapter.JSONAdapter``, ``.xml_adapter.XMLAdapter``,
``.two_step_adapter.TwoStepAdapter``, ``.utils`` (value helpers); dspex's own ``.text.TextAdapter``.
"""

from .base import Adapter, FieldInfoWithName
from .chat_adapter import ChatAdapter
from .json_adapter import JSONAdapter
from .text import TextAdapter
from .two_step_adapter import TwoStepAdapter
from .xml_adapter import XMLAdapter

# The adapters by name: what a saved program, a search over adapters and an LM's preference name.
# Adding an adapter is one entry here (adapters that need constructor arguments, like TwoStepAdapter, cannot be).
ADAPTERS: dict[str, type[Adapter]] = {"ChatAdapter": ChatAdapter, "JSONAdapter": JSONAdapter,
                                      "TextAdapter": TextAdapter}

__all__ = ["Adapter", "ChatAdapter", "JSONAdapter", "TextAdapter", "XMLAdapter", "TwoStepAdapter",
           "FieldInfoWithName", "ADAPTERS"]
