"""``azure``: Azure OpenAI, the chat-completions format at a deployment's URL.

``LM("azure/<deployment>", base_url="https://<resource>.openai.azure.com", api_version=...)`` (or
``AZURE_API_BASE`` / ``AZURE_API_VERSION``, LiteLLM's names) posts to
``{base}/openai/deployments/{deployment}/chat/completions?api-version=...`` with the key in an ``api-key``
header (``AZURE_OPENAI_API_KEY`` or ``AZURE_API_KEY``). Bodies, answers, streams and the ``x-ratelimit-*``
headers are OpenAI's.
"""

from __future__ import annotations

from urllib.parse import quote

from ..config import LMConfig, Secret
from .openai import OpenAI

DEFAULT_API_VERSION = "2025-02-01-preview"  # LiteLLM's default (litellm 1.110)


class Azure(OpenAI):
    name = "azure"

    def url(self, cfg: LMConfig) -> str:
        version = cfg.api_version or DEFAULT_API_VERSION
        return (f"{cfg.base_url.rstrip('/')}/openai/deployments/{quote(cfg.model, safe='')}/chat/completions"
                f"?api-version={quote(version, safe='')}")

    def headers(self, key: Secret | None) -> dict:
        return {"api-key": key.reveal()} if key else {}
