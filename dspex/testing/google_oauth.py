"""The simulator's token route: Google's OAuth 2.0 token endpoint for a service account (what google-auth
asks when Vertex AI's requests need an access token), as RFC 7523 says: a JWT bearer grant whose assertion
names the service account (``iss``), this endpoint (``aud``), the cloud-platform scope and a future expiry,
signed RS256. The server checks those claims and the algorithm (the signature is Google's own to check); the
tokens it issues are the only ones the Vertex AI route takes."""

from __future__ import annotations

import base64
import json
import secrets
import time
from urllib.parse import parse_qs

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # the audience google-auth names whatever token_uri is


def _segment(text: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def grant(raw: bytes, account: str | None, token_uri: str) -> tuple[int, dict]:
    """(status, body): an access token for a well-formed grant by ``account`` (None: any account)."""
    form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != GRANT or "assertion" not in form:
        return 400, {"error": "unsupported_grant_type", "error_description": f"grant_type must be {GRANT}"}
    try:
        head, claims, _signature = form["assertion"].split(".")
        header, payload = _segment(head), _segment(claims)
    except (ValueError, TypeError):
        return 400, {"error": "invalid_grant", "error_description": "the assertion is not a JWT"}
    problems = [what for what, ok in (
        ("alg RS256", header.get("alg") == "RS256"),
        ("iss the service account", account is None or payload.get("iss") == account),
        ("aud this token endpoint", payload.get("aud") in (token_uri, GOOGLE_TOKEN_URI)),
        ("the cloud-platform scope", SCOPE in str(payload.get("scope", "")).split()),
        ("an expiry in the future", isinstance(payload.get("exp"), (int, float)) and payload["exp"] > time.time()),
    ) if not ok]
    if problems:
        return 400, {"error": "invalid_grant", "error_description": "the assertion needs " + ", ".join(problems)}
    return 200, {"access_token": f"ya29.sim-{secrets.token_hex(16)}", "expires_in": 3599, "token_type": "Bearer"}
