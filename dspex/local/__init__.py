"""Local models: a GGUF model served by llama-cpp-python in its own process, owned by a supervised actor."""

from .models import KNOWN_MODELS, resolve_model

__all__ = ["KNOWN_MODELS", "resolve_model"]
