"""One HTTP attempt on the event loop (aiohttp), under the same rules as the threaded transport.

``Transport`` (``transport.py``) owns the rules of an attempt: the request it makes (``prepare``, signed when
the wire format signs) and how an answer, a timeout, a broken connection or an oversized body is classified
and billed. This executor sends the request over an ``aiohttp.ClientSession`` and hands what happened back
to those rules, so both engines book and retry identically. Why aiohttp, not httpx's ``AsyncClient``:
``benchmarks/bench_async_http.py`` (figures in benchmarks/README.md).

The session is made on first use, on the loop that runs the attempts (``Engines.loop``), with no connection
cap of its own: admission (the client actor's ``max_in_flight``) is the only cap, so the pool grows with what
the client admits. A request streamed to a sink is not sent here (the pipeline sends those on a thread).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import Any

import aiohttp
import requests

from .transport import MAX_BODY, AttemptResult, BodyTooLarge, Transport

READ_CHUNK = 65536


class AsyncTransport:
    """See the module docstring. ``rules``: the client's threaded transport in this process."""

    def __init__(self, rules: Transport) -> None:
        self.rules = rules
        self.cfg = rules.cfg
        self._session: aiohttp.ClientSession | None = None
        self._proxy = requests.utils.get_environ_proxies(rules.origin).get(rules.origin.split(":", 1)[0])
        self._timeout = aiohttp.ClientTimeout(total=self.cfg.timeout, connect=min(10.0, self.cfg.timeout))

    def __repr__(self) -> str:
        return f"<AsyncTransport {self.cfg.qualified} {self.rules.origin}>"

    def _need_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ssl=_ssl_context(),
                                             enable_cleanup_closed=False)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def attempt(self, messages: list[dict], params: dict) -> AttemptResult:
        """One request, whole (not streamed); the same outcome the threaded transport gives."""
        rules = self.rules
        call = rules.prepare(messages, params)
        start = time.monotonic()
        session = self._need_session()
        status = 0
        try:
            async with session.request(call.method, rules.origin + call.path, data=call.body, headers=call.headers,
                                       timeout=self._timeout, allow_redirects=False, proxy=self._proxy) as resp:
                status = resp.status
                raw = await _read_capped(resp, MAX_BODY)
                headers = resp.headers
        except asyncio.TimeoutError as exc:  # the attempt's whole deadline (connect, send, read)
            return rules.late(call, status == 200, start, rules.scrub(str(exc)) if str(exc) else "")
        except (aiohttp.ClientError, OSError) as exc:  # refused, reset, truncated body, TLS
            detail = rules.scrub(f"{type(exc).__name__}: {exc}")
            return rules.broken(call, status == 200, start, detail)
        except BodyTooLarge as exc:
            return rules.too_large(call, status, start, str(exc))
        return rules.interpret(call, status, headers, raw, start)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def _read_capped(resp: Any, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes (the connection is then dropped, not reused)."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        resp.close()
        raise BodyTooLarge(f"the response declares {declared} bytes (more than {limit}); not read")
    if declared is not None and resp.headers.get("Content-Encoding") is None:
        return await resp.read()  # as declared: aiohttp's parser reads no byte past Content-Length
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            resp.close()
            raise BodyTooLarge(f"the response is larger than {limit} bytes; the rest was not read")
        chunks.append(chunk)
    return b"".join(chunks)


def _ssl_context() -> ssl.SSLContext:
    """The certificates the threaded transport trusts: ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``, else
    certifi's bundle (requests' default)."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle is None:
        import certifi

        bundle = certifi.where()
    return ssl.create_default_context(cafile=bundle)


__all__ = ["AsyncTransport"]
