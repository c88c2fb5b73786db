"""The simulator's check of an AWS Signature Version 4 (Bedrock's requests), made with botocore's signer: the
request is signed again from its own signed headers, body and time with the server's credentials, and the
two signatures compared. botocore is the ``bedrock`` extra (``./run test`` installs it)."""

from __future__ import annotations

import hmac
import re

_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<access>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
                   r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?Signature=(?P<signature>[0-9a-f]+)$")


def identity(method: str, path: str, headers: dict, body: bytes, expected: str | None) -> str | None:
    """``expected`` (the server's ``"<key id>:<secret>[:<token>]"``) when the request carries a valid SigV4
    signature made with it (None: the server checks no key: any signature will do), else a short reason
    (what the server's 401/403 names)."""
    lower = {k.lower(): v for k, v in headers.items()}
    match = _AUTH.match(lower.get("authorization", ""))
    if match is None:
        return "no SigV4 signature" if expected is not None else None
    if expected is None:
        return None
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    access, _, rest = expected.partition(":")
    secret, _, token = rest.partition(":")
    if match["access"] != access:
        return f"unknown access key {match['access']}"
    signed = match["signed"].split(";")
    request = AWSRequest(method=method, url=f"http://{lower.get('host', '')}{path}", data=body,
                         headers={name: lower.get(name, "") for name in signed})
    request.context["timestamp"] = lower.get("x-amz-date", "")
    auth = SigV4Auth(Credentials(access, secret, token or None), match["service"], match["region"])
    mine = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return expected if hmac.compare_digest(mine, match["signature"]) else "the signature does not match"
