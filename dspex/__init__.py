"""dspex: declarative language-model programs on OTP-style supervision (see README).

``import dspex as dspy`` gives a DSPy program the names it uses (DSPy's top level, ``dspy.utils``,
``dspy.predict``, ``dspy.primitives``, ``dspy.signatures``, ``dspy.adapters``, ``dspy.settings``); the names
only dspex has (runtimes, budgets, journals, supervision) are below them.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled, version as _version

try:
    __version__ = _version("dspex")
except _NotInstalled:  # a source tree that was never installed
    __version__ = "0+unknown"
del _NotInstalled, _version

from .adapters import Adapter, ChatAdapter, JSONAdapter, TextAdapter, TwoStepAdapter, XMLAdapter
from .adapters.types import Audio, Code, File, History, Image, Reasoning, ToolCallResults, ToolCalls, Type
from .clients import LM, Breaker, ClientStatus, Completion, Embedder, LedgerReport, UsageTotals
from .clients.base_lm import BaseLM
from .clients.cache_control import Cache
from .clients.cache_control import configure_cache as _configure_cache
from .config import Settings
from .errors import (AdapterParseError, AuthError, BudgetExceeded, CircuitOpen, ClientExited, ConfigError,
                     ContextWindowExceededError, DSPyError, DspexError, ExampleError, JournalCorrupt, JournalError,
                     JournalLocked, JournalTooNew, JournalWriteError, LMAuthError, LMBillingError, LMCollectionLimitError,
                     LMConfigurationError, LMError, LMInvalidRequestError, LMLockTimeoutError, LMNotConfiguredError,
                     LMProviderError, LMRateLimitError, LMServerError, LMStreamAssemblyError, LMTimeout, LMTimeoutError,
                     LMTransportError, LMUnexpectedError, LMUnsupportedFeatureError, LMUnsupportedModelError,
                     MalformedResponse, OptionalDependencyMissing, ProviderError, RateLimited, SignatureError,
                     is_retryable_lm_error)
from .evaluate import Evaluate, EvalRow, EvaluationResult
from .logs import (configure_dspy_loggers, configure_logging, disable_litellm_logging, disable_logging,
                   enable_litellm_logging, enable_logging)
from .clients.usage_tracker import track_usage
from . import metrics
from .primitives import Completions, Example, Prediction, Usage, examples_from, load_jsonl
from .programs import (BestOfN, ChainOfThought, Module, MultiChainComparison, Parallel, Predict, Predictor, ReAct, Refine,
                       StreamListener, StreamResponse, Tool, combine, load, majority, streamify)
from .programs.settings import configure, context, load_settings, settings
from .runtime import Runtime, current_runtime, inspect_history, runtime
from .signature import (Field, InputField, OutputField, Signature, SignatureMeta, ensure_signature, infer_prefix,
                        make_signature)
from .signatures import OldField, OldInputField, OldOutputField
from .teleprompt import (COPRO, BootstrapFewShot, BootstrapFewShotWithRandomSearch, CandidateScore, CompileProgress,
                         CompileReport, Ensemble, EvaluationFailed, GEPA, KNN, KNNFewShot, LabeledFewShot, MIPROv2, SIMBA,
                         BootstrapFewShotWithOptuna, InferRules, bootstrap_trace_data, AvatarOptimizer, BetterTogether,
                         BootstrapFinetune)
from .retrievers import ColBERTv2, Embeddings, EmbeddingsWithScores, Retrieve
from .utils.asyncify import asyncify
from .utils.syncify import syncify

BaseModule = Module  # DSPy's base class of modules: dspex has one
BootstrapRS = BootstrapFewShotWithRandomSearch  # DSPy's short name

__all__ = [
    # DSPy's programming model
    "Signature", "SignatureMeta", "InputField", "OutputField", "Field", "OldField", "OldInputField", "OldOutputField",
    "ensure_signature", "infer_prefix", "make_signature", "Example", "Prediction", "Completions", "Usage", "load_jsonl",
    "examples_from", "Module", "BaseModule", "Predictor", "Predict", "ChainOfThought", "ReAct", "Tool",
    "MultiChainComparison", "BestOfN", "Refine", "Parallel", "majority", "load", "combine", "Adapter", "ChatAdapter",
    "JSONAdapter", "TextAdapter", "XMLAdapter", "TwoStepAdapter", "Audio", "Code", "File", "History", "Image", "Reasoning", "ToolCallResults",
    "ToolCalls", "Type", "LM", "BaseLM", "Embedder", "Evaluate", "EvaluationResult", "EvalRow", "metrics",
    "LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "BootstrapRS", "KNN", "KNNFewShot", "MIPROv2",
    "GEPA", "COPRO", "SIMBA", "InferRules", "BootstrapFewShotWithOptuna", "bootstrap_trace_data", "Ensemble",
    "BootstrapFinetune", "BetterTogether", "AvatarOptimizer",
    "CompileReport", "CandidateScore", "CompileProgress", "EvaluationFailed",
    "Retrieve", "Embeddings", "EmbeddingsWithScores", "ColBERTv2",
    "configure", "context", "load_settings",
    "settings", "cache", "configure_cache", "inspect_history", "streamify", "StreamListener", "StreamResponse",
    "streaming", "asyncify", "syncify", "is_retryable_lm_error", "track_usage", "enable_logging", "disable_logging",
    "configure_dspy_loggers", "enable_litellm_logging", "disable_litellm_logging",
    # DSPy's submodules users import from
    "utils", "predict", "primitives", "signatures", "adapters", "experimental", "dsp", "retrievers",
    # errors: dspex's tree, and DSPy's names for the same failures
    "DspexError", "SignatureError", "ExampleError", "AdapterParseError", "ConfigError", "LMError", "RateLimited",
    "CircuitOpen", "ProviderError", "AuthError", "LMTimeout", "BudgetExceeded", "MalformedResponse", "ClientExited",
    "OptionalDependencyMissing",
    "JournalError", "JournalCorrupt", "JournalLocked", "JournalTooNew", "JournalWriteError", "DSPyError",
    "ContextWindowExceededError", "LMAuthError", "LMBillingError", "LMCollectionLimitError", "LMConfigurationError",
    "LMInvalidRequestError", "LMLockTimeoutError", "LMNotConfiguredError", "LMProviderError", "LMRateLimitError",
    "LMServerError", "LMStreamAssemblyError", "LMTimeoutError", "LMTransportError", "LMUnexpectedError",
    "LMUnsupportedFeatureError", "LMUnsupportedModelError",
    # the runtime
    "Runtime", "runtime", "current_runtime", "Settings", "configure_logging", "Breaker", "Completion", "UsageTotals",
    "LedgerReport", "ClientStatus",
]

cache = Cache()  # DSPy's ``dspy.cache``: a view of the current runtime's response cache


def configure_cache(enable_disk_cache: bool = True, enable_memory_cache: bool = True, disk_cache_dir: str | None = None,
                    disk_size_limit_bytes: int | None = None, memory_max_entries: int = 1_000_000) -> None:
    """DSPy's ``dspy.configure_cache``: which caches the current runtime's LM calls use (memory LRU, the
    disk file in ``disk_cache_dir`` or the runtime's cache folder); ``dspex.cache`` then describes them."""
    global cache
    options = {} if disk_size_limit_bytes is None else {"disk_size_limit_bytes": disk_size_limit_bytes}
    cache = _configure_cache(enable_disk_cache, enable_memory_cache, disk_cache_dir,
                             memory_max_entries=memory_max_entries, **options)


# DSPy's import paths; they re-export from the layers above, so they load last
from . import adapters, datasets, dsp, experimental, predict, primitives, retrievers, signatures, streaming, utils  # noqa: E402

import os as _os  # noqa: E402

if _os.environ.get("DSPEX_OTEL", "0") not in ("0", ""):  # tracing with no code (dspex.telemetry)
    if _os.environ["DSPEX_OTEL"] != "1":
        raise ConfigError(f"DSPEX_OTEL must be 0 or 1, got {_os.environ['DSPEX_OTEL']!r}")
    from .telemetry import instrument_from_environment as _instrument_from_environment

    _instrument_from_environment()
del _os
