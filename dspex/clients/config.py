"""LM client settings: validated, immutable, and free of secrets (the key is a separate :class:`Secret`)."""

from __future__ import annotations

import base64
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..providers import PROVIDERS
from ..scrub import remember
from ..config import Settings

DEFAULT_BASE_URL = {name: spec.base_url for name, spec in PROVIDERS.items()}  # from the provider registry


def base_url_for(provider: str, base_url: str | None, region: str | None = None) -> str:
    """The endpoint: ``base_url`` as given, else the provider's base variable (``AZURE_API_BASE``, ...), else
    its default (a regional one, such as Bedrock's, for ``region``); a self-hosted provider with neither is
    a ConfigError that says what to set."""
    if base_url:
        return base_url
    spec = PROVIDERS[provider]
    found = next((os.environ[name] for name in spec.base_env if os.environ.get(name)), None) or spec.base_url
    if not found:
        raise ConfigError(f"{provider}/ models have no default endpoint: pass base_url= (DSPy's api_base=)"
                          + (f" or set {' or '.join(spec.base_env)}" if spec.base_env else ""))
    if "{region}" in found:
        if not region:  # only bedrock/ can lack one: vertex_ai/'s location has a default
            raise ConfigError(f"{provider}/ models need a region: pass aws_region_name= or set AWS_REGION_NAME "
                              "(or AWS_REGION)")
        found = found.format(region=region)
    return found


def aws_region(given: str | None) -> str | None:
    """The AWS region: the one given, else ``AWS_REGION_NAME``, else ``AWS_REGION`` (LiteLLM's order)."""
    return given or os.environ.get("AWS_REGION_NAME") or os.environ.get("AWS_REGION") or None


def google_credentials(value: str | dict) -> tuple[Secret, list[Secret]]:
    """A service account (its JSON text or dict, or the path of its file) as the client's key: the path, or
    ``"json:"`` and the compact JSON in base64 (a Secret holds no spaces), and the private key's base64 body
    as a Secret of its own (kept alive by the handle, so it is masked wherever dspex writes)."""
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        return Secret(value), []
    try:
        info = value if isinstance(value, dict) else json.loads(value)
        body = "".join(line for line in str(info.get("private_key", "")).splitlines() if not line.startswith("-----"))
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"vertex_credentials is not a service account's JSON ({type(exc).__name__})") from None
    text = base64.b64encode(json.dumps(info, separators=(",", ":")).encode()).decode()
    return Secret("json:" + text), ([Secret(body)] if body else [])


def aws_credentials(access_key_id: str | None = None, secret_access_key: str | None = None,
                    session_token: str | None = None) -> tuple[Secret, list[Secret]] | None:
    """The AWS credentials given, else those of the environment, as the client's key (one Secret,
    ``"<key id>:<secret>[:<token>]"``) and the Secrets of its parts (kept alive by the handle, so each part
    alone is masked too); None when there are none."""
    access = access_key_id or os.environ.get("AWS_ACCESS_KEY_ID")
    secret = secret_access_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
    token = session_token or os.environ.get("AWS_SESSION_TOKEN")
    if not access or not secret:
        return None
    parts = [Secret(secret), *([Secret(token)] if token else [])]
    return Secret(":".join([access, secret, *([token] if token else [])])), parts


AUTO = "auto"
MAX_TIMEOUT = 24 * 3600.0  # seconds: a longer request timeout is a mistake (inf would overflow the socket layer)
"""``rpm="auto"`` / ``tpm="auto"``: no cap until the provider tells us one (headers, 429s); see AdaptiveRate."""


class Secret:
    """An API key. Prints, logs and pickles as ``'***'``: only :meth:`reveal` gives the value.

    Pickling drops the value on purpose (a handle or program sent to another process or saved to
    disk never carries a key); the receiving side reads its key from the environment. While it lives,
    what this process writes has the key masked (:mod:`dspex.scrub`).
    """

    __slots__ = ("_value", "__weakref__")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("an API key must be a non-empty string")
        value = value.strip()
        if any(c.isspace() or not c.isprintable() for c in value):  # the message never shows the key
            raise ConfigError(f"the API key ({len(value)} characters) contains a space, a line break or another "
                              "invisible character (a copy-paste leftover?): pass the key alone")
        self._value = value
        remember(self)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is never pickled: pass the key to the process that needs it through its "
                        "environment (e.g. OPENAI_API_KEY)")


@dataclass(frozen=True)
class Breaker:
    """Circuit breaker settings: a breaker is for outages, not for errors that retries absorb.

    It opens when the recent attempts (of the last ``window`` s, at most the last ``window_calls``) number
    at least ``min_calls``, at least ``max_failures`` of them failed, and the failures are at least
    ``failure_rate`` of them: by default 50% of at least 20 (Hystrix's rule); requests still out that were
    sent before the newest failure count as not failed so far, and a timeout does not count once a request
    sent after it has succeeded (waiting ``timeout_grace`` s for one while any is out: a process too busy to
    read its answers is not an outage; ``CircuitBreaker``). After ``reset_after`` s,
    ``trial_calls`` trial requests go; it closes when a majority of them succeed, else opens again. While it
    is open a request waits for it, up to ``max_wait`` s, then fails with ``CircuitOpen`` (0: fail at once,
    as a service answering users wants). ``count_timeouts=False``: a timeout says nothing about the
    dependency's health (a local model on a busy machine). ``fail_fraction`` rejects that share of
    requests on purpose (chaos testing)."""

    max_failures: int = 5
    window: float = 10.0
    reset_after: float = 5.0
    failure_rate: float = 0.5
    fail_fraction: float = 0.0
    min_calls: int = 20
    window_calls: int = 100
    trial_calls: int = 3
    max_wait: float = 60.0
    count_timeouts: bool = True
    timeout_grace: float = 2.0

    def __post_init__(self) -> None:
        ints = (self.max_failures, self.min_calls, self.window_calls, self.trial_calls)
        if (not all(isinstance(n, int) and not isinstance(n, bool) for n in ints) or self.max_failures < 1
                or self.window <= 0 or self.reset_after < 0 or not 0 <= self.fail_fraction <= 1
                or not 0 < self.failure_rate <= 1 or self.min_calls < 1 or self.window_calls < self.min_calls
                or self.trial_calls < 1 or not 0 <= self.max_wait < float("inf")
                or not 0 <= self.timeout_grace < float("inf")):
            raise ConfigError(f"invalid {self}: use max_failures >= 1, window > 0, reset_after >= 0, "
                              "failure_rate in (0, 1], fail_fraction in [0, 1], min_calls >= 1, window_calls >= "
                              "min_calls, trial_calls >= 1, max_wait >= 0, timeout_grace >= 0 (seconds)")


@dataclass(frozen=True)
class LMConfig:
    """Everything about a client except its key. ``provider/model`` names it; the rest shapes the pipeline."""

    provider: str
    model: str
    base_url: str
    temperature: float = 0.0
    max_tokens: int = 512
    timeout: float = 30.0
    rpm: float | str | None = AUTO
    tpm: float | str | None = AUTO
    max_in_flight: int = 64
    retries: int = 5
    breaker: Breaker = field(default_factory=Breaker)
    cache: bool = True
    budget_usd: float | None = None
    budget_tokens: int | None = None
    backoff_base: float = 0.5
    backoff_cap: float = 20.0
    params: tuple[tuple[str, Any], ...] = ()
    name: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra_headers=: sent with every request (never credentials)
    api_version: str | None = None  # Azure OpenAI's api-version
    region: str | None = None  # the AWS region a Bedrock request is signed for; Vertex AI's location
    project: str | None = None  # Vertex AI's Google Cloud project
    hedge: float | str | None = AUTO  # when an unanswered attempt gets a twin (hedging.py)

    def __post_init__(self) -> None:
        _check_headers(self.headers, self.qualified)
        if self.api_version is not None and (self.provider != "azure" or not isinstance(self.api_version, str)
                                             or not self.api_version.strip()):
            raise ConfigError(f"LM {self.qualified}: api_version= is Azure OpenAI's (a string such as "
                              f"'2024-10-21'), got {self.api_version!r} for provider {self.provider!r}")
        checks = [
            (self.provider in PROVIDERS, f"unknown provider {self.provider!r}: use one of {', '.join(PROVIDERS)}"),
            (bool(self.model), "the model name is empty: write 'provider/model', e.g. 'openai/gpt-4o-mini'"),
            (self.base_url.startswith(("http://", "https://")), f"base_url must start with http(s)://, got {self.base_url!r}"),
            (_number(self.timeout) and 0 < self.timeout <= MAX_TIMEOUT,
             f"timeout must be a number of seconds in (0, {MAX_TIMEOUT:g}], got {self.timeout!r}"),
            (SAMPLING_CHECKS["max_tokens"][0](self.max_tokens), f"max_tokens must be an int >= 1, got {self.max_tokens!r}"),
            (isinstance(self.max_in_flight, int) and self.max_in_flight >= 1,
             f"max_in_flight must be an int >= 1, got {self.max_in_flight!r}"),
            (isinstance(self.retries, int) and self.retries >= 0, f"retries must be an int >= 0, got {self.retries!r}"),
            (_auto_none_or_positive(self.hedge), f"hedge must be 'auto', None (never) or a number of seconds > 0, got {self.hedge!r}"),
            (_auto_none_or_positive(self.rpm), f"rpm must be a number > 0, None (no cap) or 'auto', got {self.rpm!r}"),
            (_auto_none_or_positive(self.tpm), f"tpm must be a number > 0, None (no cap) or 'auto', got {self.tpm!r}"),
            (self.budget_usd is None or (_number(self.budget_usd) and self.budget_usd >= 0),
             f"budget_usd must be a number >= 0, got {self.budget_usd!r}"),
            (self.budget_tokens is None or (isinstance(self.budget_tokens, int) and self.budget_tokens >= 0),
             f"budget_tokens must be an int >= 0, got {self.budget_tokens!r}"),
            (SAMPLING_CHECKS["temperature"][0](self.temperature), f"temperature must be in [0, 2], got {self.temperature!r}"),
            (_number(self.backoff_base) and _number(self.backoff_cap) and 0 < self.backoff_base <= self.backoff_cap,
             "need 0 < backoff_base <= backoff_cap (numbers of seconds)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"LM {self.provider}/{self.model}: {message}")
        check_sampling(dict(self.params), f"LM {self.provider}/{self.model}")

    @property
    def qualified(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def transport_key(self) -> tuple:
        """What makes two handles of one client need transports of their own: the headers they send and the
        URL parts besides the base (Azure's api-version, the region a request is signed for, Vertex AI's
        project)."""
        return self.headers, self.api_version, self.region, self.project

    @property
    def client_key(self) -> str:
        """One client actor per provider + model + endpoint (+ optional name)."""
        return f"{self.qualified}@{self.base_url}" + (f"#{self.name}" if self.name else "")

    @property
    def limits(self) -> tuple:
        """The settings a shared client actor enforces; handles of one client must agree on them (not
        ``retries``: each request carries its handle's)."""
        return (self.rpm, self.tpm, self.max_in_flight, self.breaker, self.budget_usd,
                self.budget_tokens, self.backoff_base, self.backoff_cap, self.timeout)

    def sampling(self) -> dict:
        """The parameters that shape the answer (part of the cache key)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, **dict(self.params)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


SAMPLING_CHECKS: dict[str, tuple[Any, str]] = {
    "temperature": (lambda v: _number(v) and 0 <= v <= 2, "a number in [0, 2]"),
    "max_tokens": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an int >= 1"),
    "top_p": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an int >= 1"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an int"),
    "presence_penalty": (lambda v: _number(v) and -2 <= v <= 2, "a number in [-2, 2]"),
    "frequency_penalty": (lambda v: _number(v) and -2 <= v <= 2, "a number in [-2, 2]"),
    "stop": (lambda v: isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)),
             "a string or a list of strings"),
}


KNOWN_PARAMS = frozenset({
    "temperature", "max_tokens", "top_p", "n", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "response_format", "user", "tools", "tool_choice", "parallel_tool_calls",
    "max_completion_tokens", "reasoning_effort", "service_tier", "top_k", "stop_sequences", "metadata",
    "candidate_count", "prompt_format"})
"""Request parameters the three wire formats (and the local server) understand; anything else is a
ConfigError naming it, never a silently ignored or mis-sent option."""


def check_sampling(params: dict, where: str) -> None:
    """Request parameters are checked before anything is leased or sent: known ones by type and range,
    the rest must be JSON (what goes into the request body)."""
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise ConfigError(f"{where}: unknown request option(s) {unknown}; known: {', '.join(sorted(KNOWN_PARAMS))}")
    for name, value in params.items():
        check = SAMPLING_CHECKS.get(name)
        if check is not None and not check[0](value):
            raise ConfigError(f"{where}: {name} must be {check[1]}, got {value!r}")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: parameter {name}={value!r} cannot be sent as JSON ({exc})") from None


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP token (RFC 9110)
_CREDENTIAL_HEADER = re.compile(r"authorization|cookie|api[-_]?key|token|secret|password", re.I)


def _check_headers(headers: Any, where: str) -> None:
    """``extra_headers`` travel in the client's settings (pickled to worker processes, shown in errors), so a
    header that carries a credential is refused: the key goes in ``api_key=`` (a Secret), never here."""
    for pair in headers:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ConfigError(f"LM {where}: extra_headers must map header names to strings, got {pair!r:.80}")
        name, value = pair
        if not _HEADER_NAME.match(name) or any(c in value for c in "\r\n\0"):
            raise ConfigError(f"LM {where}: extra_headers has an invalid header {name!r} (or a line break in its value)")
        if _CREDENTIAL_HEADER.search(name):
            raise ConfigError(f"LM {where}: extra_headers may not carry a credential ({name!r}): pass the key as "
                              "api_key= (it never leaves this process; worker processes read it from the "
                              "provider's variable)")


def _auto_none_or_positive(value: Any) -> bool:
    """A setting that is "auto", None or a finite number > 0 (``rpm``, ``tpm``, ``hedge``)."""
    if value is None or value == AUTO:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def parse_model(model: str) -> tuple[str, str]:
    """``"openai/gpt-4o-mini"`` → ``("openai", "gpt-4o-mini")``, with a clear error otherwise."""
    if not isinstance(model, str) or "/" not in model:
        raise ConfigError(f"model must look like 'provider/model' (e.g. 'openai/gpt-4o-mini'), got {model!r}")
    provider, name = model.split("/", 1)
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r} in {model!r}: use one of {', '.join(PROVIDERS)} "
                          "(any OpenAI-compatible server: 'openai/<model>' with base_url=...)")
    return provider, name


def resolve_key(provider: str, api_key: str | Secret | None, settings: Settings | None = None) -> Secret | None:
    """The key from the argument, else from the settings (``DSPEX_OPENAI_API_KEY``, the provider's usual
    variables in the registry such as ``OPENAI_API_KEY``, or the settings file), else None."""
    if isinstance(api_key, Secret):
        return api_key
    if api_key is not None:
        return Secret(api_key)
    if provider == "bedrock":  # AWS's pair of variables (a worker process reads them as the handle did)
        found = aws_credentials()
        return found[0] if found is not None else None
    if provider == "vertex_ai":  # a service account's JSON or its file; none: Application Default Credentials
        value = os.environ.get("VERTEXAI_CREDENTIALS")
        return google_credentials(value)[0] if value else None
    value = (settings if settings is not None else Settings.load()).key(provider)
    return Secret(value) if value else None


__all__ = ["LMConfig", "Breaker", "Secret", "parse_model", "resolve_key", "PROVIDERS", "DEFAULT_BASE_URL", "AUTO",
           "base_url_for", "aws_region", "aws_credentials", "google_credentials"]
