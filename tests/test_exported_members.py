"""The public names of both packages, pinned (as httpx pins its own): adding one is a decision, and
dropping or renaming one breaks users, so either shows up here."""

from __future__ import annotations

import dspex
import supervision

DSPEX = {
    "Adapter", "AdapterParseError", "Audio", "AuthError", "BaseLM", "BaseModule", "BestOfN", "BootstrapFewShot",
    "BootstrapFewShotWithOptuna", "BootstrapFewShotWithRandomSearch", "BootstrapRS", "Breaker", "BudgetExceeded", "COPRO", "CandidateScore",
    "ChainOfThought", "ChatAdapter", "CircuitOpen", "ClientExited", "ClientStatus", "Code", "CompileProgress",
    "Retrieve", "Embeddings", "EmbeddingsWithScores", "ColBERTv2", "retrievers",
    "BootstrapFinetune", "BetterTogether", "AvatarOptimizer",
    "CompileReport", "Completion", "Completions", "ConfigError", "ContextWindowExceededError", "DSPyError",
    "DspexError", "Embedder", "EvalRow", "Evaluate", "EvaluationFailed", "EvaluationResult", "Example",
    "ExampleError", "Field", "File", "Ensemble", "GEPA", "History", "Image", "InferRules", "InputField", "JSONAdapter", "JournalCorrupt",
    "JournalError", "JournalLocked", "JournalTooNew", "JournalWriteError", "KNN", "KNNFewShot", "LM", "LMAuthError",
    "LMBillingError", "LMCollectionLimitError", "LMConfigurationError", "LMError", "LMInvalidRequestError",
    "LMLockTimeoutError", "LMNotConfiguredError", "LMProviderError", "LMRateLimitError", "LMServerError",
    "LMStreamAssemblyError", "LMTimeout", "LMTimeoutError", "LMTransportError", "LMUnexpectedError",
    "LMUnsupportedFeatureError", "LMUnsupportedModelError", "LabeledFewShot", "LedgerReport", "MIPROv2",
    "MalformedResponse", "Module", "MultiChainComparison", "OptionalDependencyMissing", "OldField", "OldInputField", "OldOutputField",
    "OutputField", "Parallel", "Predict", "Prediction", "Predictor", "ProviderError", "RateLimited", "ReAct",
    "Reasoning", "Refine", "Runtime", "SIMBA", "Settings", "Signature", "SignatureError", "SignatureMeta", "StreamListener",
    "StreamResponse", "TextAdapter", "Tool", "ToolCallResults", "ToolCalls", "TwoStepAdapter", "Type", "Usage",
    "UsageTotals", "XMLAdapter", "adapters", "asyncify", "bootstrap_trace_data", "cache", "combine", "configure", "configure_cache",
    "configure_dspy_loggers", "configure_logging", "context", "load_settings", "current_runtime", "disable_litellm_logging",
    "disable_logging", "dsp", "enable_litellm_logging", "enable_logging", "ensure_signature", "examples_from",
    "experimental", "infer_prefix", "inspect_history", "is_retryable_lm_error", "load", "load_jsonl", "majority",
    "make_signature", "metrics", "predict", "primitives", "runtime", "settings", "signatures", "streamify",
    "streaming", "syncify", "track_usage", "utils",
}
# DSPy 3.4.1's public top-level names (``dir(dspy)``), and those dspex does not have, each with its reason
DSPY = {
    "Adapter", "AdapterParseError", "Audio", "AvatarOptimizer", "BaseLM", "BaseModule", "BestOfN", "BetterTogether",
    "BootstrapFewShot", "BootstrapFewShotWithOptuna", "BootstrapFewShotWithRandomSearch", "BootstrapFinetune",
    "BootstrapRS", "COPRO", "ChainOfThought", "ChatAdapter", "Code", "CodeAct", "CodeExecutionError",
    "CodeInterpreter", "CodeInterpreterError", "ColBERTv2", "Completions", "ContextWindowExceededError", "DSPyError",
    "Embedder", "Embeddings", "EmbeddingsWithScores", "Ensemble", "Evaluate", "Example", "File", "FinalOutput",
    "Flex", "GEPA", "History", "Image", "InferRules", "InputField", "JSONAdapter", "KNN", "KNNFewShot", "LM",
    "LMAuthError", "LMBillingError", "LMCollectionLimitError", "LMConfigurationError", "LMError",
    "LMInvalidRequestError", "LMLockTimeoutError", "LMNotConfiguredError", "LMProviderError", "LMRateLimitError",
    "LMServerError", "LMStreamAssemblyError", "LMTimeoutError", "LMTransportError", "LMUnexpectedError",
    "LMUnsupportedFeatureError", "LMUnsupportedModelError", "LabeledFewShot", "LocalInterpreter", "MIPROv2",
    "Module", "MultiChainComparison", "OldField", "OldInputField", "OldOutputField", "OutputField", "Parallel",
    "Predict", "Prediction", "ProgramOfThought", "Provider", "PythonInterpreter", "RLM", "ReAct", "ReActV2",
    "Reasoning", "Refine", "Retrieve", "SIMBA", "SandboxSerializable", "Signature", "SignatureMeta", "Tool",
    "ToolCallResults", "ToolCalls", "TrainingJob", "TwoStepAdapter", "Type", "XMLAdapter", "adapters", "asyncify",
    "bootstrap_trace_data", "clients", "configure", "configure_cache", "configure_dspy_loggers", "context",
    "disable_litellm_logging", "disable_logging", "dsp", "enable_litellm_logging", "enable_logging",
    "ensure_signature", "evaluate", "infer_prefix", "inspect_history", "is_retryable_lm_error", "lm15", "load",
    "load_settings", "majority", "make_signature", "predict", "primitives", "propose", "resolve_interpreter_factory",
    "retrievers", "settings", "signatures", "streamify", "streaming", "syncify", "teleprompt", "threading",
    "track_usage", "utils",
}
NOT_IN_DSPEX = {
    # DSPy's proposer module: dspex's proposers are MIPROv2's and GEPA's own (dspex.teleprompt.proposer), with
    # other constructors, so an import of DSPy's path would mislead
    "propose": "MIPROv2's proposer is internal (dspex.teleprompt.proposer)",
    # fine-tuning needs a trainable model (no GPU here): out of scope (its optimizers are ConfigErrors saying so)
    "TrainingJob": "fine-tuning",
    # code execution needs a sandbox (DSPy uses Deno): out of scope
    "ProgramOfThought": "code sandbox", "CodeAct": "code sandbox", "CodeInterpreter": "code sandbox",
    "CodeInterpreterError": "code sandbox", "CodeExecutionError": "code sandbox", "PythonInterpreter": "code sandbox",
    "LocalInterpreter": "code sandbox", "SandboxSerializable": "code sandbox", "resolve_interpreter_factory":
    "code sandbox", "RLM": "code sandbox", "FinalOutput": "code sandbox",
    # DSPy 3.4's experimental surfaces, not yet here
    "ReActV2": "DSPy 3.4 experimental", "Flex": "DSPy 3.4 experimental", "lm15": "DSPy 3.4 experimental",
    "Provider": "DSPy 3.4 experimental (dspex's providers are a registry: dspex.providers)",
    "threading": "the standard library module DSPy's package happens to import",
}
SUPERVISION = {
    "ActorExited", "ActorRef", "ActorRuntime", "AutoShutdown", "CallFailed", "CallTimeout", "ChildCounts",
    "ChildInfo", "Cookie", "CookieError", "NodeInfo", "NodeState", "ChildSpec", "FailedToStartChild", "GenServer", "Kind", "Lifecycle", "LifecycleEvent", "NoReply",
    "Restart", "RootFailure", "Shutdown", "SpecError", "Strategy", "SupervisionError", "SupervisorRef",
    "SupervisorSpec", "TlsConfig", "TlsError",
}


def test_dspex_exports():
    assert set(dspex.__all__) == DSPEX
    assert len(dspex.__all__) == len(DSPEX)  # no name listed twice
    for name in dspex.__all__:
        assert getattr(dspex, name) is not None


def test_every_dspy_name_exists_or_is_listed_with_its_reason():
    missing = {name for name in DSPY if not hasattr(dspex, name)}
    assert missing == set(NOT_IN_DSPEX)  # a name built since comes off the list; nothing new goes missing


def test_supervision_exports():
    assert set(supervision.__all__) == SUPERVISION
    assert len(supervision.__all__) == len(SUPERVISION)
    for name in supervision.__all__:
        assert getattr(supervision, name) is not None
