"""dspex: declarative language-model programs on OTP-style supervision (see README)."""

from .adapters import Adapter, ChatAdapter, JSONAdapter, TextAdapter
from .clients import LM, Breaker, Embedder, ClientStatus, Completion, LedgerReport, UsageTotals
from .errors import (AdapterParseError, AuthError, BudgetExceeded, CircuitOpen, ClientExited, ConfigError, DspexError,
                     ExampleError, JournalCorrupt, JournalError, JournalLocked, JournalTooNew, JournalWriteError, LMError,
                     LMTimeout, MalformedResponse, ProviderError, RateLimited, SignatureError)
from .evaluate import Evaluate, EvaluationResult, EvalRow
from .logs import configure_logging
from .programs import (BestOfN, ChainOfThought, Module, MultiChainComparison, Predict, Predictor, ReAct, Refine, Tool,
                       combine, load)
from .primitives import Example, Prediction, Usage, examples_from, load_jsonl
from . import metrics
from .programs import StreamListener, StreamResponse, streamify, streaming
from .programs.settings import configure, context
from .runtime import Runtime, current_runtime, inspect_history, runtime
from .settings import Settings
from .signature import Field, InputField, OutputField, Signature
from .teleprompt import (BootstrapFewShot, BootstrapFewShotWithRandomSearch, CandidateScore, CompileProgress,
                         CompileReport, EvaluationFailed, GEPA, KNNFewShot, LabeledFewShot, MIPROv2)

__all__ = ["Signature", "InputField", "OutputField", "Field", "Example", "Prediction", "Usage", "load_jsonl",
           "examples_from", "Adapter", "ChatAdapter", "JSONAdapter", "TextAdapter", "DspexError", "SignatureError",
           "ExampleError", "AdapterParseError", "ConfigError", "LMError", "RateLimited", "CircuitOpen", "ProviderError",
           "AuthError", "LMTimeout", "BudgetExceeded", "MalformedResponse", "ClientExited", "LM", "Breaker",
           "Completion", "UsageTotals", "LedgerReport", "ClientStatus", "Runtime", "runtime", "current_runtime",
           "configure_logging", "Module", "Predictor", "Predict", "ChainOfThought", "ReAct", "Tool", "MultiChainComparison",
           "BestOfN", "Refine", "load", "combine", "Evaluate", "EvaluationResult", "EvalRow", "LabeledFewShot",
           "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "CompileReport", "CandidateScore", "CompileProgress",
           "KNNFewShot", "Embedder", "configure", "context", "metrics", "inspect_history",
           "MIPROv2", "GEPA", "streamify", "StreamListener", "StreamResponse", "streaming",
           "Settings", "JournalError", "JournalCorrupt", "JournalLocked", "JournalTooNew", "JournalWriteError",
           "EvaluationFailed"]
