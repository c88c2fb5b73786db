"""``bedrock``: Amazon Bedrock's Converse API (``POST /model/{modelId}/converse``), each request signed with
AWS Signature Version 4 by botocore's signer (the optional extra ``dspex[bedrock]``; never hand-rolled crypto).

``LM("bedrock/anthropic.claude-3-5-haiku-20241022-v1:0")`` reads the credentials LiteLLM reads
(``aws_access_key_id=`` / ``aws_secret_access_key=`` / ``aws_session_token=``, else ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``) and the region (``aws_region_name=``, else
``AWS_REGION_NAME`` or ``AWS_REGION``; the endpoint is ``https://bedrock-runtime.{region}.amazonaws.com``).
The client's key is the credential pair as one :class:`Secret` (``"<key id>:<secret>[:<token>]"``), masked
wherever dspex writes; the signature is made per attempt (it covers the body and the time).

Messages become Converse's turns (system messages its ``system`` blocks; turns of one role in a row merged,
as Converse wants them alternating); ``max_tokens``, ``temperature``, ``top_p`` and ``stop`` its
``inferenceConfig``. A streamed call is ``ConverseStream`` (``/converse-stream``): AWS's binary event stream,
read with botocore's decoder (which checks each message's checksums); its ``metadata`` event has the counts.
Tools are not sent yet (a ConfigError says so).
"""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import quote, urlsplit

from ...errors import ConfigError
from ..config import LMConfig, Secret
from .base import Parsed, StreamDelta, WireError, WireFormat, checked
from .parts import _unsupported, content_text

INFERENCE = {"max_tokens": "maxTokens", "temperature": "temperature", "top_p": "topP", "stop": "stopSequences"}
SERVICE = "bedrock"
INSTALL = "pip install 'dspex[bedrock]' (botocore signs Bedrock's requests)"


def require_signer() -> None:
    """ConfigError naming the extra when botocore is not installed (checked when the LM is made)."""
    if importlib.util.find_spec("botocore") is None:
        raise ConfigError(f"bedrock/ models need botocore: {INSTALL}")


def region_of(cfg: LMConfig) -> str:
    """The region the request is signed for: the client's, else the one in the endpoint's host name."""
    if cfg.region:
        return cfg.region
    host = urlsplit(cfg.base_url).hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "bedrock-runtime":
        return parts[1]
    raise ConfigError(f"{cfg.qualified}: no AWS region: pass aws_region_name= or set AWS_REGION_NAME")


def credentials(key: Secret | None) -> tuple[str, str, str | None]:
    if key is None:
        raise ConfigError("bedrock/ models need AWS credentials: pass aws_access_key_id= and "
                          "aws_secret_access_key=, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    access, _, rest = key.reveal().partition(":")
    secret, _, token = rest.partition(":")
    return access, secret, token or None


class Bedrock(WireFormat):
    name = "bedrock"
    stream_framing = "aws-eventstream"
    signs = True
    usage_at = ("usage", "inputTokens", "outputTokens")

    def url(self, cfg: LMConfig) -> str:
        return f"{cfg.base_url.rstrip('/')}/model/{quote(cfg.model, safe='')}/converse"

    def headers(self, key: Secret | None) -> dict:
        return {}  # the signature is made per attempt: signed()

    def signed(self, cfg: LMConfig, key: Secret | None, method: str, url: str, headers: dict,
               body: bytes | None, state: dict | None = None) -> dict:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        access, secret, token = credentials(key)
        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        SigV4Auth(Credentials(access, secret, token), SERVICE, region_of(cfg)).add_auth(request)
        return dict(request.headers.items())

    def body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        system, turns = [], []
        for m in messages:
            if isinstance(m.get("content"), list) and any(p.get("type") != "text" for p in m["content"]):
                raise _unsupported(cfg, self.name, "a content part that is not text")
            if m.get("tool_calls") or m["role"] == "tool":
                raise _unsupported(cfg, self.name, "tool calls (not sent to Bedrock yet)")
            text = content_text(m.get("content"))
            if m["role"] in ("system", "developer"):
                system.append({"text": text})
            elif turns and turns[-1]["role"] == m["role"]:
                turns[-1]["content"].append({"text": text})
            else:
                turns.append({"role": m["role"], "content": [{"text": text}]})
        inference: dict[str, Any] = {}
        for name, value in params.items():
            if name not in INFERENCE:
                if name == "n" and value == 1:
                    continue
                raise _unsupported(cfg, self.name, f"{name}={value!r:.80}")
            inference[INFERENCE[name]] = [value] if name == "stop" and isinstance(value, str) else value
        return {"messages": turns, **({"system": system} if system else {}),
                **({"inferenceConfig": inference} if inference else {})}

    def stream_url(self, cfg: LMConfig) -> str:
        return f"{cfg.base_url.rstrip('/')}/model/{quote(cfg.model, safe='')}/converse-stream"

    def stream_body(self, cfg: LMConfig, messages: list[dict], params: dict) -> dict:
        return self.body(cfg, messages, params)  # the route says it streams, not the body

    def stream_event(self, data: Any) -> StreamDelta:
        """One ConverseStream event (``{"event": type, "payload": JSON}``): text from ``contentBlockDelta``,
        the counts from ``metadata``; the others add nothing."""
        try:
            kind, payload = data["event"], data["payload"]
            if kind == "contentBlockDelta":
                text = payload["delta"].get("text", "")
                if not isinstance(text, str):
                    raise TypeError("delta.text is not a string")
                return StreamDelta(text)
            if kind == "metadata":
                usage = payload["usage"]
                return StreamDelta("", usage["inputTokens"], usage["outputTokens"])
            return StreamDelta()
        except (KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"not a Bedrock ConverseStream event ({type(exc).__name__}: {exc})") from None

    def parse(self, body: Any) -> Parsed:
        try:
            blocks = body["output"]["message"]["content"]
            text = "".join(b["text"] for b in blocks if "text" in b)
            usage = body["usage"]  # every Converse answer states its counts: a missing one is no answer
            return checked(text, usage["inputTokens"], usage["outputTokens"], "", self.count_fields)
        except (KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"not a Bedrock Converse answer ({type(exc).__name__}: {exc})") from None
