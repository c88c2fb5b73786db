"""DSPy's ``dspy.utils.exceptions``: the error names DSPy code imports from there (dspex's own tree is
``dspex.errors``), and ``format_error_for_lm``, the text an agent's model reads when something failed."""

from __future__ import annotations

import traceback

from ..errors import (AdapterParseError, ContextWindowExceededError, DSPyError, LMAuthError, LMBillingError,
                      LMCollectionLimitError, LMConfigurationError, LMError, LMInvalidRequestError,
                      LMLockTimeoutError, LMNotConfiguredError, LMProviderError, LMRateLimitError, LMServerError,
                      LMStreamAssemblyError, LMTimeoutError, LMTransportError, LMUnexpectedError,
                      LMUnsupportedFeatureError, LMUnsupportedModelError)


def format_error_for_lm(error: BaseException, *, traceback_frames: int = 0) -> str:
    """``error`` as text for a model to read: its message; with ``traceback_frames`` > 0, a newline then
    the traceback (at most that many frames) ending in ``Type: message``."""
    if traceback_frames <= 0:
        return str(error)
    lines = traceback.format_exception(type(error), error, error.__traceback__, limit=traceback_frames)
    return "\n" + "".join(lines).strip()


__all__ = ["AdapterParseError", "ContextWindowExceededError", "DSPyError", "LMError", "LMTransportError",
           "LMLockTimeoutError", "LMCollectionLimitError", "LMConfigurationError", "LMNotConfiguredError",
           "LMUnsupportedFeatureError", "LMProviderError", "LMUnexpectedError", "LMStreamAssemblyError", "LMAuthError",
           "LMBillingError", "LMRateLimitError", "LMInvalidRequestError", "LMUnsupportedModelError", "LMTimeoutError",
           "LMServerError", "format_error_for_lm"]
