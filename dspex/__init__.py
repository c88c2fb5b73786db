"""dspex: declarative language-model programs on OTP-style supervision (see README)."""

from .adapters import Adapter, ChatAdapter, JSONAdapter, TextAdapter
from .clients import LM, Breaker, Embedder, ClientStatus, Completion, LedgerReport, UsageTotals
from .errors import (AdapterParseError, AuthError, BudgetExceeded, CircuitOpen, ClientExited, ConfigError, DspexError,
                     ExampleError, JournalCorrupt, JournalError, JournalLocked, JournalTooNew, JournalWriteError, LMError,
                     LMTimeout, MalformedResponse, ProviderError, RateLimited, SignatureError)
from .evaluate import Evaluate, EvaluationResult, EvalRow
from .logs import configure_logging
from .programs import (BestOfN, ChainOfThought, Module, MultiChainComparison, Predict, Predictor, ReAct, Refine, Tool,
                       combine, load, majority)
from .primitives import Example, Prediction, Usage, examples_from, load_jsonl
from . import metrics
from .programs import StreamListener, StreamResponse, streamify, streaming
from .programs.settings import configure, context, settings
from .clients.base_lm import BaseLM
from .clients.cache_control import Cache
from .clients.cache_control import configure_cache as _configure_cache
from .runtime import Runtime, current_runtime, inspect_history, runtime
from .config import Settings
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
           "EvaluationFailed", "settings", "BaseLM", "cache", "configure_cache", "utils", "majority", "predict", "dsp"]

cache = Cache()  # DSPy's ``dspy.cache``: a view of the current runtime's response cache


def configure_cache(enable_disk_cache: bool = True, enable_memory_cache: bool = True, disk_cache_dir: str | None = None,
                    disk_size_limit_bytes: int | None = None, memory_max_entries: int = 1_000_000) -> None:
    """DSPy's ``dspy.configure_cache``: which caches the current runtime's LM calls use (memory LRU, the
    disk file in ``disk_cache_dir`` or the runtime's cache folder); ``dspex.cache`` then describes them."""
    global cache
    options = {} if disk_size_limit_bytes is None else {"disk_size_limit_bytes": disk_size_limit_bytes}
    cache = _configure_cache(enable_disk_cache, enable_memory_cache, disk_cache_dir,
                             memory_max_entries=memory_max_entries, **options)


from . import dsp, predict, utils  # noqa: E402 - DSPy's paths (dspy.utils.DummyLM ...): they import from above
