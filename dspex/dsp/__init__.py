"""DSPy's ``dspy.dsp`` paths that user code and DSPy's tests import (``dspex.dsp.utils.settings``,
``dspex.dsp.colbertv2``)."""
