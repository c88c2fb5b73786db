"""The public names of both packages, pinned (as httpx pins its own): adding one is a decision, and
dropping or renaming one breaks users, so either shows up here."""

from __future__ import annotations

import dspex
import supervision

DSPEX = {
    "Adapter", "AdapterParseError", "AuthError", "BestOfN", "Breaker", "BudgetExceeded", "ChainOfThought",
    "ChatAdapter", "CircuitOpen", "ClientExited", "ClientStatus", "Completion", "ConfigError", "DspexError",
    "EvalRow", "Evaluate", "EvaluationResult", "Example", "ExampleError", "Field", "InputField", "JSONAdapter", "LM",
    "LMError", "LMTimeout", "LedgerReport", "MalformedResponse", "Module", "MultiChainComparison", "OutputField",
    "Predict", "Prediction", "Predictor", "ProviderError", "RateLimited", "ReAct", "Refine", "Runtime", "Signature",
    "SignatureError", "TextAdapter", "Tool", "Usage", "UsageTotals", "combine", "configure_logging",
    "current_runtime", "examples_from", "load", "load_jsonl", "runtime", "LabeledFewShot", "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch", "CompileReport", "CandidateScore", "CompileProgress", "KNNFewShot",
    "Embedder", "configure", "context", "metrics", "inspect_history", "MIPROv2", "GEPA",
    "streamify", "StreamListener", "StreamResponse", "streaming", "Settings",
    "JournalError", "JournalCorrupt", "JournalLocked", "JournalTooNew", "JournalWriteError", "EvaluationFailed",
}
SUPERVISION = {
    "ActorExited", "ActorRef", "ActorRuntime", "AutoShutdown", "CallFailed", "CallTimeout", "ChildCounts",
    "ChildInfo", "ChildSpec", "FailedToStartChild", "GenServer", "Kind", "Lifecycle", "LifecycleEvent", "NoReply",
    "Restart", "RootFailure", "Shutdown", "SpecError", "Strategy", "SupervisionError", "SupervisorRef",
    "SupervisorSpec",
}


def test_dspex_exports():
    assert set(dspex.__all__) == DSPEX
    assert len(dspex.__all__) == len(DSPEX)  # no name listed twice
    for name in dspex.__all__:
        assert getattr(dspex, name) is not None


def test_supervision_exports():
    assert set(supervision.__all__) == SUPERVISION
    assert len(supervision.__all__) == len(SUPERVISION)
    for name in supervision.__all__:
        assert getattr(supervision, name) is not None
