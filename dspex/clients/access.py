"""How a provider is reached beyond its key and endpoint: the options some providers take at construction
(LiteLLM's names) and what they resolve to. ``bedrock/``: AWS's credentials and region
(``aws_access_key_id=``, ``aws_secret_access_key=``, ``aws_session_token=``, ``aws_region_name=``, else the AWS
variables); ``vertex_ai/``: the Google Cloud project, location and service account (``vertex_project=``,
``vertex_location=``, ``vertex_credentials=``, else the VERTEXAI_* variables). A provider's options given to
another is a ConfigError; one whose signing library is missing is a ConfigError naming the extra."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .config import Secret, aws_credentials, aws_region, google_credentials
from .wire.bedrock import require_signer
from .wire.vertex import require_google_auth

KIND = {"bedrock": "AWS", "vertex_ai": "Vertex AI"}
OPTIONS = {"bedrock": ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_region_name"),
           "vertex_ai": ("vertex_project", "vertex_location", "vertex_credentials")}


@dataclass
class Access:
    """The key to use (the one given, or one made from the provider's credentials), the Secrets of its parts
    (the handle keeps them alive, so each part alone is masked too), and the region and project."""

    api_key: str | Secret | None
    parts: list[Secret] = field(default_factory=list)
    region: str | None = None
    project: str | None = None


def provider_access(provider: str, api_key: str | Secret | None, params: dict[str, Any]) -> Access:
    """Take the provider options out of ``params`` (the rest are request parameters) and resolve them."""
    given = {owner: {name: params.pop(name) for name in names if name in params} for owner, names in OPTIONS.items()}
    for owner, options in given.items():
        if options and owner != provider:
            raise ConfigError(f"{', '.join(f'{k}=' for k in options)}: {KIND[owner]} options are {owner}/ models'")
    access = Access(api_key)
    if provider == "bedrock":
        require_signer()
        aws = given["bedrock"]
        access.region = aws_region(aws.get("aws_region_name"))
        found = aws_credentials(*(aws.get(name) for name in OPTIONS["bedrock"][:3])) if api_key is None else None
        if found is not None:
            access.api_key, access.parts = found
    elif provider == "vertex_ai":
        require_google_auth()
        vertex = given["vertex_ai"]
        access.project = vertex.get("vertex_project") or os.environ.get("VERTEXAI_PROJECT") or None
        access.region = vertex.get("vertex_location") or os.environ.get("VERTEXAI_LOCATION") or "us-central1"
        if api_key is None and vertex.get("vertex_credentials"):
            access.api_key, access.parts = google_credentials(vertex["vertex_credentials"])
    return access


__all__ = ["Access", "provider_access"]
