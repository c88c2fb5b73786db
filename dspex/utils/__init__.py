"""DSPy's ``dspy.utils``: the names DSPy users import from it (``DummyLM``, ``BaseCallback``, ``asyncify`` ...).

Its modules sit in different layers (tests/test_layers.py): ``callback``, ``exceptions``, ``asyncify``,
``syncify`` and ``parallelizer`` under everything that calls them; ``dummies`` on top (it is a user of the LM
client). This package imports them all for the user and is imported by nothing inside dspex.
"""

from . import dummies
from .dummies import DummyLM, DummyVectorizer, dummy_rm

__all__ = ["dummies", "DummyLM", "DummyVectorizer", "dummy_rm"]
