"""DSPy's ``dspy.dsp.utils``: ``settings``, ``DEFAULT_CONFIG`` and ``dotdict``."""

from ...utils.dummies import AttrDict as dotdict
from .settings import DEFAULT_CONFIG, settings

__all__ = ["settings", "DEFAULT_CONFIG", "dotdict"]
