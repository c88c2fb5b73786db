"""``vertex_ai``: Gemini on Vertex AI (``.../v1/projects/{project}/locations/{location}/publishers/google/models/
{model}:generateContent``), with an OAuth access token from google-auth (the optional extra ``dspex[vertex]``).

``LM("vertex_ai/gemini-2.0-flash", vertex_project=..., vertex_location="us-central1")`` (or ``VERTEXAI_PROJECT``
/ ``VERTEXAI_LOCATION``, LiteLLM's names; the location defaults to us-central1) authenticates with
``vertex_credentials=`` (a service account's JSON, or the path of its file), else ``VERTEXAI_CREDENTIALS``,
else Google's Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's login, the metadata
server). The token is asked for when the first request needs it and again before it expires, by
google-auth's own refresh (its requests transport, so a proxy set for HTTPS applies). Bodies, answers and
streams are Gemini's.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import threading
from typing import Any
from urllib.parse import quote

from ...errors import ConfigError, CredentialsError
from ..config import LMConfig, Secret
from .gemini import Gemini

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
INSTALL = "pip install 'dspex[vertex]' (google-auth gets Vertex AI's access tokens)"


def require_google_auth() -> None:
    if importlib.util.find_spec("google.auth") is None:
        raise ConfigError(f"vertex_ai/ models need google-auth: {INSTALL}")


class Vertex(Gemini):
    name = "vertex_ai"
    signs = True

    def _model_url(self, cfg: LMConfig, method: str) -> str:
        if not cfg.project:
            raise ConfigError(f"{cfg.qualified}: no Google Cloud project: pass vertex_project= or set VERTEXAI_PROJECT")
        location = cfg.region or "us-central1"
        return (f"{cfg.base_url.rstrip('/')}/v1/projects/{quote(cfg.project, safe='')}/locations/"
                f"{quote(location, safe='')}/publishers/google/models/{quote(cfg.model, safe='')}:{method}")

    def url(self, cfg: LMConfig) -> str:
        return self._model_url(cfg, "generateContent")

    def stream_url(self, cfg: LMConfig) -> str:
        return self._model_url(cfg, "streamGenerateContent") + "?alt=sse"

    def headers(self, key: Secret | None) -> dict:
        return {}  # the access token is added per attempt: signed()

    def signed(self, cfg: LMConfig, key: Secret | None, method: str, url: str, headers: dict,
               body: bytes | None, state: dict | None = None) -> dict:
        """``headers`` with a valid access token (``state`` keeps this transport's credentials)."""
        state = state if state is not None else {}
        with state.setdefault("lock", threading.Lock()):
            credentials = state.get("credentials")
            if credentials is None:
                credentials = state["credentials"] = _credentials(key)
            if not credentials.valid:
                import google.auth.exceptions
                import google.auth.transport.requests

                try:
                    credentials.refresh(google.auth.transport.requests.Request())
                except google.auth.exceptions.GoogleAuthError as exc:
                    raise CredentialsError(f"google-auth could not get an access token: {type(exc).__name__}: "
                                           f"{str(exc)[:200]}", cfg.qualified, 1) from None
            return {**headers, "Authorization": f"Bearer {credentials.token}"}


def _credentials(key: Secret | None) -> Any:
    """google-auth credentials: from the service account in ``key`` (its JSON, or its file's path), else the
    Application Default Credentials."""
    import google.auth
    import google.auth.exceptions
    from google.oauth2 import service_account

    if key is None:
        try:
            return google.auth.default(scopes=SCOPES)[0]
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ConfigError("vertex_ai/ models need Google credentials: pass vertex_credentials= (a service "
                              "account's JSON or its file), set VERTEXAI_CREDENTIALS or "
                              f"GOOGLE_APPLICATION_CREDENTIALS ({str(exc)[:120]})") from None
    text = key.reveal()
    try:
        if text.startswith("json:"):  # the JSON itself (dspex.clients.config.google_credentials)
            info = json.loads(base64.b64decode(text[5:]))
        else:
            with open(os.path.expanduser(text), encoding="utf-8") as fh:
                info = json.load(fh)
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"vertex_credentials is not a service account's JSON or the path of one "
                          f"({type(exc).__name__})") from None
