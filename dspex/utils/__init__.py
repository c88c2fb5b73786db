"""DSPy's ``dspy.utils``: the names DSPy users import from it (``DummyLM``, ``BaseCallback``, ``asyncify`` ...).

Its modules sit in different layers (tests/test_layers.py): ``callback``, ``exceptions``, ``asyncify``,
``syncify`` and ``parallelizer`` under everything that calls them; ``dummies`` on top (it is a user of the LM
client). So this package imports nothing when it is imported (a low module importing
``dspex.utils.parallelizer`` must not pull in the LM client): each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DummyLM": "dummies", "DummyVectorizer": "dummies", "dummy_rm": "dummies",
    "ParallelExecutor": "parallelizer", "asyncify": "asyncify", "syncify": "syncify",
    "BaseCallback": "callback", "with_callbacks": "callback",
}
_MODULES = ("dummies", "parallelizer", "asyncify", "syncify", "callback", "callback_context", "exceptions")


def __getattr__(name: str) -> Any:
    """``dspex.utils.DummyLM`` and ``dspex.utils.dummies``: the module is imported on first use."""
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'dspex.utils' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{where}", __name__), name)


__all__ = sorted(_WHERE)
