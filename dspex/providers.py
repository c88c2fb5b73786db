"""The provider registry: who each provider is, in one entry.

A provider's identity is its name (the ``provider/`` of ``"provider/model"``), its default base URL,
the environment variables its API key is usually in, the prices it publishes and the wire format it
speaks. Everything else derives from this table: ``parse_model`` and ``LMConfig``'s checks, the
default base URLs, key resolution, ``dspex.Settings``' key fields (``<name>_api_key``, also read from
``DSPEX_<NAME>_API_KEY``) and the default price table.

Adding a provider is one entry here; one that speaks a new wire format also needs that format's module
in the ``dspex.clients.wire`` package (its ``WireFormat`` subclass, named in ``dspex.clients.wire.registry``'s
``WIRE_FORMATS``; an OpenAI-compatible one names ``wire="openai"`` and needs nothing more).
The registry is plain data at the bottom layer (``dspex.Settings`` is built from it), so a wire format
is named here and resolved by the clients layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

Price = tuple[float, float]  # USD per million tokens: (prompt, completion)


@dataclass(frozen=True)
class ProviderSpec:
    """One provider. ``key_env``: the usual variables of its API key, first found wins (empty: it takes
    no key). ``prices``: model -> (USD per 1M prompt tokens, per 1M completion tokens), as published."""

    name: str
    base_url: str
    wire: str  # the wire format's name in dspex.clients.wire.WIRE_FORMATS
    key_env: tuple[str, ...] = ()
    prices: Mapping[str, Price] = field(default_factory=dict)
    # model-name prefixes that think natively and return their thinking (a ``dspy.Reasoning`` output is then
    # left to the model: the adapter asks with ``reasoning_effort`` and reads ``reasoning_content``)
    reasoning: tuple[str, ...] = ()
    # the variables its base URL may be in (LiteLLM's names), read when no base_url= is passed; with
    # ``base_url=""`` there is no default: one of them or base_url= is required (a self-hosted server)
    base_env: tuple[str, ...] = ()
    key_optional: bool = False  # a server that usually takes no key (Ollama, vLLM, LM Studio)
    # other variables that hold credentials (AWS's secret and session token): masked wherever dspex writes
    credential_env: tuple[str, ...] = ()

    def reasons(self, model: str) -> bool:
        """Whether ``model`` of this provider thinks natively and returns its thinking."""
        return model.startswith(self.reasoning) if self.reasoning else False

    @property
    def key_field(self) -> str | None:
        """Its key's field in ``dspex.Settings`` (None: it takes no key)."""
        return f"{self.name}_api_key" if self.key_env else None


_SPECS = (
    ProviderSpec("openai", "https://api.openai.com/v1", wire="openai", key_env=("OPENAI_API_KEY",), prices={
        "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60), "gpt-4.1-nano": (0.10, 0.40), "o3-mini": (1.10, 4.40)},
                 # OpenAI's own o-series keep their reasoning to themselves on this API; these servers return it
                 reasoning=("deepseek-reasoner", "deepseek-r1", "qwq"), base_env=("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    ProviderSpec("anthropic", "https://api.anthropic.com", wire="anthropic", key_env=("ANTHROPIC_API_KEY",), prices={
        "claude-3-5-haiku-latest": (0.80, 4.00), "claude-3-5-sonnet-latest": (3.00, 15.00),
        "claude-sonnet-4-0": (3.00, 15.00)},
                 reasoning=("claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4", "claude-haiku-4")),
    ProviderSpec("gemini", "https://generativelanguage.googleapis.com", wire="gemini",
                 key_env=("GEMINI_API_KEY", "GOOGLE_API_KEY"), prices={
        "gemini-2.0-flash": (0.10, 0.40), "gemini-1.5-flash": (0.075, 0.30), "gemini-1.5-pro": (1.25, 5.00)},
                 reasoning=("gemini-2.5", "gemini-3")),
    # a model served by dspex.local.server (the runtime starts it and passes its URL): no key, free
    ProviderSpec("local", "http://127.0.0.1/v1", wire="local"),
    # a dspex.BaseLM subclass: its forward() answers in this process (no HTTP; the URL only names the client)
    ProviderSpec("python", "http://python.invalid", wire="python"),
    # OpenAI-compatible APIs, by LiteLLM's prefixes, default base URLs and key variables (litellm 1.110)
    ProviderSpec("openrouter", "https://openrouter.ai/api/v1", wire="openai",
                 key_env=("OPENROUTER_API_KEY", "OR_API_KEY"), base_env=("OPENROUTER_API_BASE",)),
    ProviderSpec("together_ai", "https://api.together.ai/v1", wire="openai",
                 key_env=("TOGETHER_API_KEY", "TOGETHER_AI_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_TOKEN"),
                 base_env=("TOGETHER_AI_API_BASE",)),
    ProviderSpec("groq", "https://api.groq.com/openai/v1", wire="openai", key_env=("GROQ_API_KEY",),
                 base_env=("GROQ_API_BASE",)),
    ProviderSpec("deepseek", "https://api.deepseek.com/beta", wire="openai", key_env=("DEEPSEEK_API_KEY",),
                 base_env=("DEEPSEEK_API_BASE",), reasoning=("deepseek-reasoner", "deepseek-r1")),
    ProviderSpec("mistral", "https://api.mistral.ai/v1", wire="openai", key_env=("MISTRAL_API_KEY",),
                 base_env=("MISTRAL_API_BASE",)),
    ProviderSpec("fireworks_ai", "https://api.fireworks.ai/inference/v1", wire="openai",
                 key_env=("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
                 base_env=("FIREWORKS_API_BASE",)),
    ProviderSpec("xai", "https://api.x.ai/v1", wire="openai", key_env=("XAI_API_KEY",), base_env=("XAI_API_BASE",)),
    ProviderSpec("perplexity", "https://api.perplexity.ai", wire="openai",
                 key_env=("PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"), base_env=("PERPLEXITY_API_BASE",)),
    ProviderSpec("cerebras", "https://api.cerebras.ai/v1", wire="openai", key_env=("CEREBRAS_API_KEY",),
                 base_env=("CEREBRAS_API_BASE",)),
    ProviderSpec("huggingface", "https://router.huggingface.co/v1", wire="openai",
                 key_env=("HF_TOKEN", "HUGGINGFACE_API_KEY"), base_env=("HF_API_BASE", "HUGGINGFACE_API_BASE")),
    # self-hosted or per-workspace servers: no default base URL (base_url= or the variable)
    ProviderSpec("databricks", "", wire="openai", key_env=("DATABRICKS_API_KEY",), base_env=("DATABRICKS_API_BASE",)),
    ProviderSpec("hosted_vllm", "", wire="openai", key_env=("HOSTED_VLLM_API_KEY",),
                 base_env=("HOSTED_VLLM_API_BASE",), key_optional=True),
    ProviderSpec("lm_studio", "", wire="openai", key_env=("LM_STUDIO_API_KEY",), base_env=("LM_STUDIO_API_BASE",),
                 key_optional=True),
    # Azure OpenAI: the deployment's URL under the resource's base, ?api-version=, the key in an api-key header
    ProviderSpec("azure", "", wire="azure", key_env=("AZURE_OPENAI_API_KEY", "AZURE_API_KEY"),
                 base_env=("AZURE_API_BASE",)),
    # Amazon Bedrock's Converse API, SigV4-signed (botocore, dspex[bedrock]); the endpoint is the region's
    ProviderSpec("bedrock", "https://bedrock-runtime.{region}.amazonaws.com", wire="bedrock",
                 base_env=("AWS_BEDROCK_RUNTIME_ENDPOINT",), credential_env=("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")),
    # Gemini on Vertex AI: an OAuth token from google-auth (dspex[vertex]); the endpoint is the location's
    ProviderSpec("vertex_ai", "https://{region}-aiplatform.googleapis.com", wire="vertex_ai",
                 base_env=("VERTEXAI_API_BASE",), credential_env=("VERTEXAI_CREDENTIALS",)),
    # Ollama's native API: ollama_chat/ is /api/chat (messages), ollama/ is /api/generate (one prompt)
    ProviderSpec("ollama_chat", "http://localhost:11434", wire="ollama_chat", key_env=("OLLAMA_API_KEY",),
                 base_env=("OLLAMA_API_BASE",), key_optional=True),
    ProviderSpec("ollama", "http://localhost:11434", wire="ollama", key_env=("OLLAMA_API_KEY",),
                 base_env=("OLLAMA_API_BASE",), key_optional=True),
    # a ColBERTv2 search server (dspex.ColBERTv2, DSPy's client; the URL is the index's): no key, searches are free
    ProviderSpec("colbert", "http://0.0.0.0", wire="colbert"),
    # OpenAI's embeddings API (dspex.Embedder("openai/<model>")'s requests; the Embedder resolves the key)
    ProviderSpec("embeddings", "https://api.openai.com/v1", wire="embeddings", prices={
        "text-embedding-3-small": (0.02, 0.0), "text-embedding-3-large": (0.13, 0.0),
        "text-embedding-ada-002": (0.10, 0.0)}),
)
# prices as published in 2025; check the provider's page before relying on a budget

PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})

KEY_FIELDS: Mapping[str, str] = MappingProxyType(
    {spec.name: spec.key_field for spec in _SPECS if spec.key_field is not None})
"""provider -> its key's field in ``dspex.Settings`` (providers that take a key)."""


__all__ = ["ProviderSpec", "PROVIDERS", "KEY_FIELDS", "Price"]
