"""Programs: Module, Predict, ChainOfThought, ReAct, MultiChainComparison, BestOfN, Refine; save / load."""

from .ensembles import BestOfN, MultiChainComparison, Refine, majority
from .module import Module, Predictor, combine, load
from .parallel import Parallel
from .predict import ChainOfThought, Predict
from . import streaming
from .streaming import StreamListener, StreamResponse, streamify
from .trace import TraceStep
from .react import ReAct, Tool

__all__ = ["Module", "Predictor", "Predict", "ChainOfThought", "ReAct", "Tool", "MultiChainComparison", "BestOfN", "Refine",
           "TraceStep", "majority", "Parallel", "load", "combine", "streamify", "StreamListener", "StreamResponse", "streaming"]
