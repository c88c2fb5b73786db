"""The one error tree of ``dspex``.

::

    DspexError
    ├── SignatureError        a signature string/class is malformed (says what and where)
    ├── ExampleError          a data row is malformed (says which row/line and why)
    ├── AdapterParseError     an LM answer could not be parsed into the signature's output fields
    ├── ConfigError           a bad setting (LM options, model string, fault plan, price table)
    │   ├── RetrieverNotConfigured  dspex.Retrieve has no retriever (also an ``AssertionError``, as DSPy's)
    │   ├── OptionalDependencyMissing  a feature needs an extra: names ``pip install 'dspex[extra]'`` (an ImportError)
    │   ├── FaissNotInstalled       a corpus at brute_force_threshold needs faiss (also an ``ImportError``)
    │   └── SavedIndexError         a saved retriever directory is malformed (``path``)
    │       └── SavedIndexMissing   ... or a file of it is missing (also a ``FileNotFoundError``)
    ├── JournalError          a run's journal (Evaluate's rows, a compile's steps) cannot be used (``path``)
    │   ├── JournalCorrupt    a line other than the last is not a record (``line``); a torn last line is skipped
    │   ├── JournalLocked     another live run holds the journal / run directory (``pid``, ``host``)
    │   ├── JournalTooNew     written by a newer dspex (``format`` > ``supported``): upgrade to read it
    │   └── JournalWriteError the disk refused a write (``errno``); ``result`` holds what was done so far
    └── LMError               a language-model request failed; says what happened and what to do
        ├── RateLimited       the provider kept answering 429 after every retry
        ├── CircuitOpen       the client's breaker is open: the provider failed too often recently
        ├── ProviderError     the provider answered an error status (``status``, ``body`` excerpt)
        │   └── AuthError     401/403: the key is missing, wrong or lacks access
        ├── LMTimeout         no answer within ``timeout`` (after every retry)
        ├── BudgetExceeded    the client's ``budget_usd`` / ``budget_tokens`` is spent: nothing was sent
        ├── MalformedResponse the provider's body was not the wire format it promised
        └── ClientExited      the client actor died while the request was in flight (also an ``ActorExited``)
"""

from __future__ import annotations

from typing import Any, Sequence

from supervision.errors import ActorExited


class DspexError(Exception):
    """Base of every error raised on purpose by dspex."""


class SignatureError(DspexError, ValueError):
    """A malformed signature; the message names the problem, the place and the fix."""


class ExampleError(DspexError, ValueError):
    """A malformed example or data row (with its line number when loaded from a file)."""


class EvaluationCancelled(DspexError):
    """The run stopped (max_errors, Ctrl-C, a cancel, a budget) before this example finished; a resumed run
    redoes it (``dspex.evaluate.EvaluationCancelled``)."""


class AdapterParseError(DspexError):
    """The LM's text did not contain the signature's output fields in a parseable form."""

    def __init__(self, signature: Any, raw_text: str, missing_fields: Sequence[str] = (), reason: str = "") -> None:
        self.signature = signature
        self.raw_text = raw_text
        self.missing_fields = tuple(missing_fields)
        self.reason = reason
        excerpt = raw_text if len(raw_text) <= 300 else raw_text[:300] + "..."
        parts = [f"could not parse the LM answer for {getattr(signature, '__name__', signature)}"]
        if self.missing_fields:
            parts.append(f"missing fields: {', '.join(self.missing_fields)}")
        if reason:
            parts.append(reason)
        super().__init__("; ".join(parts) + f"\n--- raw text ---\n{excerpt}")

    def __reduce__(self):
        return (type(self), (self.signature, self.raw_text, self.missing_fields, self.reason))


class ConfigError(DspexError, ValueError):
    """A setting is invalid; the message names it and the accepted values."""


class JournalError(DspexError):
    """A journal (or the lock beside it) cannot be used; ``path`` names the file."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message)

    def __reduce__(self):
        return (_restore, (type(self), self.args, self.__dict__.copy()))


class JournalCorrupt(JournalError):
    """Line ``line`` of the journal is not one of its records (damage, not a crash: a line torn by a
    crash can only be the last, and that one is skipped)."""

    def __init__(self, path: str, line: int, reason: str) -> None:
        self.line, self.reason = line, reason
        super().__init__(f"{path}, line {line}: {reason}; the journal is damaged there: remove that line (or the "
                         "file, to start over) and run again", path)


class JournalLocked(JournalError):
    """Another run (process ``pid`` on ``host``) holds the lock of this journal or run directory."""

    def __init__(self, message: str, path: str = "", pid: int | None = None, host: str | None = None) -> None:
        self.pid, self.host = pid, host
        super().__init__(message, path)


class JournalTooNew(JournalError):
    """The journal was written by a newer dspex: its ``format`` is newer than the ``supported`` one this
    release reads, so it is neither read nor appended to."""

    def __init__(self, path: str, format: int, supported: int) -> None:
        self.format, self.supported = format, supported
        super().__init__(f"{path} was written by a newer dspex (journal format {format}; this one reads formats up "
                         f"to {supported}): upgrade dspex to resume or read it", path)


class JournalWriteError(JournalError):
    """Writing the journal failed (``errno``: ENOSPC when the disk is full); the run stopped dispatching
    and ``result`` holds what it finished (an EvaluationResult, or a compile's best program so far)."""

    def __init__(self, message: str, path: str = "", errno: int | None = None, result: Any = None) -> None:
        self.errno, self.result = errno, result
        super().__init__(message, path)


def _restore(cls: type, args: tuple, state: dict) -> Exception:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class LMError(DspexError):
    """A language-model request failed. ``model`` names the client (``provider/model``)."""

    hint = ""

    def __init__(self, message: str, model: str = "", attempts: int = 0) -> None:
        self.message = message
        self.model = model
        self.attempts = attempts
        text = f"{model}: {message}" if model else message
        if attempts > 1:
            text += f" (after {attempts} attempts)"
        if self.hint:
            text += f". {self.hint}"
        self._text = text
        Exception.__init__(self, text)  # not super(): ClientExited also derives from ActorExited

    def __reduce__(self):
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type, state: dict) -> "LMError":
    err = cls.__new__(cls)
    err.__dict__.update(state)
    Exception.__init__(err, state["_text"])
    return err


class RateLimited(LMError):
    """429 after every retry (``retry_after``: what the provider last asked for, in seconds)."""

    hint = "Lower rpm/tpm or max_in_flight, raise retries, or ask the provider for a higher limit"

    def __init__(self, message: str, model: str = "", attempts: int = 0, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, model, attempts)


class CircuitOpen(LMError):
    """The breaker is open; ``retry_in`` seconds until it lets a trial request through."""

    hint = "Wait for the breaker to heal, fix the provider, or call lm.reset_breaker()"

    def __init__(self, message: str, model: str = "", attempts: int = 0, retry_in: float = 0.0) -> None:
        self.retry_in = retry_in
        super().__init__(message, model, attempts)


class ProviderError(LMError):
    """The provider answered ``status`` (``body``: a short excerpt of its error body, secrets removed)."""

    hint = "Check the request (model name, parameters) against the provider's documentation"

    def __init__(self, message: str, model: str = "", attempts: int = 0, status: int = 0, body: str = "") -> None:
        self.status = status
        self.body = body[:300]
        super().__init__(f"{message} [HTTP {status}] {self.body}".rstrip(), model, attempts)


class AuthError(ProviderError):
    """401/403: never retried."""

    hint = "Pass api_key=... or set the provider's key variable (e.g. OPENAI_API_KEY) with a valid key"


class CredentialsError(AuthError):
    """The credentials could not be turned into what a request needs (Vertex AI's OAuth access token, asked
    of the token endpoint by google-auth): never retried."""

    hint = "Check the credentials (vertex_credentials=, VERTEXAI_CREDENTIALS or gcloud's login) and their roles"

    def __init__(self, message: str, model: str = "", attempts: int = 0) -> None:
        self.status, self.body = 0, ""
        LMError.__init__(self, message, model, attempts)


class ServerError(ProviderError):
    """5xx after every retry: the provider is unwell."""

    hint = "Retry later, lower the load (max_in_flight), or check the provider's status page"


class InvalidRequest(ProviderError):
    """A 4xx other than 401/403/429: the request itself is wrong (never retried)."""


class BillingError(ProviderError):
    """402: the provider's account is out of credit or quota."""

    hint = "Check the provider account's billing and quota"


class ContextWindowExceeded(InvalidRequest):
    """The prompt is longer than the model's context window (the provider said so). DSPy's
    ``ContextWindowExceededError``: it may be raised with no arguments, or ``message=`` / ``model=`` only
    (what ReAct's trajectory truncation and custom LMs do)."""

    hint = "Shorten the inputs or demos, lower max_tokens, or use a model with a larger context window"

    def __init__(self, message: str = "Context window exceeded", model: str | None = "", attempts: int = 0,
                 status: int = 0, body: str = "") -> None:
        if status:
            super().__init__(message, model or "", attempts, status=status, body=body)
            return
        self.status, self.body = status, body[:300]
        LMError.__init__(self, message, model or "", attempts)  # no HTTP answer to quote


class ConnectionFailed(ProviderError):
    """The connection could not be made, or dropped before an answer (after every retry)."""

    hint = "Check base_url, the network, and that the endpoint is up"


_CONTEXT_WINDOW = ("context_length_exceeded", "context length", "context window", "maximum context", "too many tokens",
                   "prompt is too long")


def provider_error(status: int, body: str, model: str = "", attempts: int = 0) -> ProviderError:
    """The error for a provider's final answer ``status`` (its body excerpt tells a context-window overflow)."""
    message = "the provider answered an error"
    if status in (401, 403):
        return AuthError("the provider refused the credentials", model, attempts, status=status, body=body)
    if status == 402:
        return BillingError(message, model, attempts, status=status, body=body)
    if status >= 500:
        return ServerError(message, model, attempts, status=status, body=body)
    if 400 <= status < 500:
        lowered = body.lower()
        kind = ContextWindowExceeded if any(m in lowered for m in _CONTEXT_WINDOW) else InvalidRequest
        return kind(message, model, attempts, status=status, body=body)
    return ProviderError(message, model, attempts, status=status, body=body)


class LMNotConfigured(ConfigError):
    """A predictor was called with no LM: none given, none configured."""


class RetrieverNotConfigured(ConfigError, AssertionError):
    """``dspex.Retrieve`` was called with no retriever: none given, none configured (DSPy asserts here)."""


class OptionalDependencyMissing(ConfigError, ImportError):
    """A feature needs a library of one of dspex's extras that is not installed: the message names the
    ``pip install 'dspex[extra]'`` that fixes it (``module``, ``extra``)."""

    def __init__(self, message: str, module: str = "", extra: str = "") -> None:
        self.module, self.extra = module, extra
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.module, self.extra))


class FaissNotInstalled(ConfigError, ImportError):
    """A retriever's corpus reached ``brute_force_threshold`` and ``faiss`` is not importable; dspex does not
    fall back to a brute-force search that may take minutes (DSPy raises ImportError here)."""


class SavedIndexError(ConfigError):
    """A saved retriever directory cannot be used: the message names the file (``path``) and what is wrong."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.args[0] if self.args else "", self.path))


class SavedIndexMissing(SavedIndexError, FileNotFoundError):
    """The saved retriever directory, or a file it needs, does not exist (DSPy raises FileNotFoundError)."""


class LMTimeout(LMError, TimeoutError):
    """No complete answer within the client's ``timeout``."""

    hint = "Raise timeout=, lower max_tokens, or check that the endpoint is reachable"


class BudgetExceeded(LMError):
    """The budget is spent; the request was not sent."""

    hint = "Raise budget_usd/budget_tokens or start a new client"


class MalformedResponse(LMError):
    """The body was not valid for the provider's wire format (``body``: excerpt)."""

    hint = "The endpoint may not speak this provider's format: check base_url and the provider prefix"

    def __init__(self, message: str, model: str = "", attempts: int = 0, body: str = "") -> None:
        self.body = body[:300]
        super().__init__(f"{message}: {self.body!r}", model, attempts)


class ClientExited(LMError, ActorExited):
    """The client actor exited while the request was in flight; its supervisor restarts it."""

    hint = "The request may or may not have reached the provider; retry it (the restarted client takes over)"

    def __init__(self, message: str, model: str = "", attempts: int = 0) -> None:
        self.target = model
        self.reason = message
        LMError.__init__(self, message, model, attempts)


# DSPy's names for the same failures (``except dspy.LMRateLimitError`` catches what dspex raises). The last
# four are failures dspex's clients cannot have (no litellm collections, locks, feature probing): they exist
# so code naming them runs, and nothing raises them.
DSPyError = DspexError
LMProviderError = ProviderError
LMAuthError = AuthError
LMRateLimitError = RateLimited
LMTimeoutError = LMTimeout
LMServerError = ServerError
LMInvalidRequestError = InvalidRequest
LMBillingError = BillingError
ContextWindowExceededError = ContextWindowExceeded
LMTransportError = ConnectionFailed
LMUnexpectedError = MalformedResponse
LMConfigurationError = ConfigError
LMNotConfiguredError = LMNotConfigured


class LMStreamAssemblyError(MalformedResponse):
    """DSPy's name: a streamed answer could not be put together (dspex retries a broken stream instead)."""


class LMUnsupportedFeatureError(LMError):
    """DSPy's name: not raised by dspex (its clients do not probe provider features)."""


class LMUnsupportedModelError(InvalidRequest):
    """DSPy's name: not raised by dspex (an unknown model is the provider's 4xx: InvalidRequest)."""


class LMCollectionLimitError(LMError):
    """DSPy's name: not raised by dspex (no litellm collections)."""


class LMLockTimeoutError(LMError):
    """DSPy's name: not raised by dspex (no file locks on LM calls)."""


DSPY_ERROR_NAMES = ("DSPyError", "LMError", "LMProviderError", "LMAuthError", "LMRateLimitError", "LMTimeoutError",
                    "LMServerError", "LMInvalidRequestError", "LMBillingError", "ContextWindowExceededError",
                    "LMTransportError", "LMUnexpectedError", "LMConfigurationError", "LMNotConfiguredError",
                    "LMStreamAssemblyError", "LMUnsupportedFeatureError", "LMUnsupportedModelError",
                    "LMCollectionLimitError", "LMLockTimeoutError")


def is_retryable_lm_error(error: BaseException) -> bool:
    """DSPy's helper: would retrying help? (rate limits, timeouts, 5xx, dropped connections, an open breaker)."""
    return isinstance(error, (RateLimited, LMTimeout, ServerError, ConnectionFailed, CircuitOpen, ClientExited))

