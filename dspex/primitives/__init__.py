"""DSPy's ``dspy.primitives``: Example, Prediction (and Usage); ``module``/``base_module`` give DSPy's paths
to Module (they sit in the top layer: tests/test_layers.py)."""

from .example import Example, examples_from, load_jsonl
from .prediction import Completions, Prediction, Usage

__all__ = ["Example", "Prediction", "Completions", "Usage", "examples_from", "load_jsonl"]
