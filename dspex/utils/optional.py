"""Optional dependencies: imported where a feature needs them, with one error that says what to install.

dspex's core install is small; each heavier library is an extra (``pip install 'dspex[optuna]'``) that only
the feature using it imports. Asking for the feature without the extra raises
:class:`~dspex.errors.OptionalDependencyMissing` (a ``ConfigError`` and an ``ImportError``) at once, before
any LM call is spent, naming the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import OptionalDependencyMissing


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """``import module``, or OptionalDependencyMissing: ``purpose`` needs it, ``pip install 'dspex[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OptionalDependencyMissing(f"{purpose} needs {module.split('.')[0]}: pip install 'dspex[{extra}]' "
                                        f"({exc})", module=module, extra=extra) from None


__all__ = ["need"]
