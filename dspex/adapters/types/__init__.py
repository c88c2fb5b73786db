"""Custom field types (DSPy 3's ``dspy.adapters.types``): values that are shown to the LM as content
parts (``Image``, ``Audio``, ``File``) or with a type-specific prompt (``Code``, ``Reasoning``,
``ToolCalls``), and ``History`` for earlier turns. ``Type`` is their base; ``split_message_content_for_custom_types``
turns a rendered user message into content parts. (``Citations`` and ``Document`` are in
``dspex.experimental``.) ``Tool`` wraps a function for an agent (also ``dspex.Tool``)."""

from .audio import Audio
from .base_type import Type, split_message_content_for_custom_types
from .code import Code
from .file import File
from .history import History
from .image import Image
from .reasoning import Reasoning
from .tool import Tool, ToolCallResults, ToolCalls

__all__ = ["History", "Image", "Audio", "File", "Type", "Tool", "ToolCalls", "ToolCallResults", "Code", "Reasoning",
           "split_message_content_for_custom_types"]
