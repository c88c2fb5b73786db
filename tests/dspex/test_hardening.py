"""Ways a hostile or careless user gets hurt, each against a real server on 127.0.0.1 or real processes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import dspex
from dspex.clients.transport import scrub_secret

KEY = "sk-hardening-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789"


class Raw:
    """A misbehaving OpenAI-style server on 127.0.0.1 that answers every POST with ``body`` (bytes or a
    function of the request body)."""

    def __init__(self, body) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload = outer.body(raw) if callable(outer.body) else outer.body
                status = 200
                if isinstance(payload, tuple):
                    status, payload = payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.body = body
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "Raw":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(content, prompt=1, completion_tokens=1) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}],
                       "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens}}).encode()


@pytest.fixture
def drt(tmp_path):
    with dspex.runtime("local", cache_dir=tmp_path / "cache", log_level=None) as runtime:
        yield runtime


def lm_for(url, **options):
    settings = {"cache": False, "retries": 1, "backoff_base": 0.01, "backoff_cap": 0.02, **options}
    return dspex.LM("openai/hostile", api_key=KEY, base_url=url, **settings)


@pytest.mark.parametrize("content", [{"text": "a dict"}, 42, ["not", "parts"], [{"text": 5}]])
def test_non_string_content_is_a_malformed_response(drt, content):
    with Raw(completion(content)) as server:
        with pytest.raises(dspex.MalformedResponse, match="content|not an OpenAI"):
            lm_for(server.url).request("hi")


def test_openai_content_parts_are_text(drt):
    with Raw(completion([{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}])) as server:
        assert lm_for(server.url)("hi") == ["hello"]


@pytest.mark.parametrize("usage", [(-5, 3), (2, -1), (1.5, 2), ("7", 1)])
def test_negative_or_odd_token_counts_are_malformed(drt, usage):
    with Raw(completion("ok", *usage)) as server:
        with pytest.raises(dspex.MalformedResponse, match="token count"):
            lm_for(server.url).request("hi")


def test_json_nested_thousands_deep_is_malformed_not_a_recursion_error(drt):
    with Raw(b"[" * 5000 + b"]" * 5000) as server:
        with pytest.raises(dspex.MalformedResponse):
            lm_for(server.url).request("hi")


@pytest.mark.parametrize("echo", ["straddle", "upper", "truncated"])
def test_no_fragment_of_the_key_survives_in_an_error(drt, echo):
    def body(raw: bytes):
        shown = {"straddle": KEY, "upper": KEY.upper(), "truncated": KEY[:-1]}[echo]
        padding = "x" * (300 - 40) if echo == "straddle" else ""  # the key crosses byte 300 of the body
        return 401, json.dumps({"error": {"message": f"{padding}Incorrect API key provided: {shown}"}}).encode()

    with Raw(body) as server:
        with pytest.raises(dspex.AuthError) as info:
            lm_for(server.url).request("hi")
    text = str(info.value) + repr(info.value) + str(getattr(info.value, "body", ""))
    for n in range(8, len(KEY)):  # no run of 8 or more characters of the key, in any case
        for i in range(0, len(KEY) - n + 1, 7):
            assert KEY[i:i + n].lower() not in text.lower()


def test_scrub_masks_fragments_and_case():
    assert scrub_secret("key=SK-ABCDEFGHIJ and sk-abcdefgh", "sk-abcdefghij") == "key=*** and ***"
    assert scrub_secret("nothing here", "sk-abcdefghij") == "nothing here"


def test_a_key_with_a_line_break_is_refused_without_showing_it():
    bad = "sk-real-key-123456789\n# old key sk-old"
    with pytest.raises(dspex.ConfigError) as info:
        dspex.clients.Secret(bad)
    assert "sk-real" not in str(info.value) and "line break" in str(info.value)


def test_a_base_exception_in_the_program_or_metric_is_that_examples_failed_row(drt):
    class Stops(dspex.Module):
        def forward(self, question):
            if question == "exit":
                raise SystemExit(3)
            return dspex.Prediction(answer=question)

    def metric(example, pred, trace=None):
        if example.question == "metric-exit":
            raise SystemExit("from the metric")
        return float("nan") if example.question == "nan" else 1.0

    data = [dspex.Example(question=q).with_inputs("question") for q in ("ok", "exit", "metric-exit", "nan", "ok2")]
    result = dspex.Evaluate(data, metric, max_concurrency=2, timeout_per_example=None, progress=False).run(Stops())
    kinds = [type(r.error).__name__ if r.error else None for r in result.rows]
    assert kinds == [None, "ProgramAborted", "MetricError", "MetricError", None]
    assert "SystemExit" in str(result.rows[1].error) and "nan" in str(result.rows[3].error)
    assert result.score == 40.0


@pytest.mark.parametrize("options", [{"max_errors": 0}, {"max_errors": -1}, {"timeout_per_example": -1.0},
                                     {"max_concurrency": 0}, {"timeout_per_example": float("inf")}])
def test_evaluate_refuses_settings_that_make_no_sense(options):
    with pytest.raises(dspex.ConfigError):
        dspex.Evaluate([dspex.Example(q="x").with_inputs("q")], lambda e, p, trace=None: 1.0, **options)


class Drip:
    """A server on 127.0.0.1 that misbehaves at the socket level: drips its headers or body, or sends an
    endless chunked body."""

    def __init__(self, mode: str) -> None:
        import socket

        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        body = completion("ok")
        try:
            conn.recv(65536)
            if self.mode == "headers":
                head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nX-Slow: {'a' * 200}\r\n\r\n".encode()
                for byte in head:
                    if self.stop.wait(0.25):
                        return
                    conn.sendall(bytes([byte]))
            elif self.mode == "body":
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
                for byte in body:
                    if self.stop.wait(0.25):
                        return
                    conn.sendall(bytes([byte]))
            else:  # giant: a chunked body that never ends (until the client hangs up)
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                chunk = b"x" * 65536
                while not self.stop.is_set():
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            return  # the client hung up: what it should do
        finally:
            conn.close()

    def __enter__(self) -> "Drip":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_timeout_bounds_the_whole_attempt_not_each_read(drt, mode):
    import time

    with Drip(mode) as server:
        lm = lm_for(server.url, timeout=1.0, retries=0)
        start = time.monotonic()
        with pytest.raises(dspex.LMTimeout):
            lm.request("hi")
        assert time.monotonic() - start < 2.0


def test_a_giant_body_is_refused_not_read_whole(drt):
    import time

    with Drip("giant") as server:
        lm = lm_for(server.url, timeout=20.0, retries=0)
        start = time.monotonic()
        with pytest.raises(dspex.MalformedResponse, match="larger than"):
            lm.request("hi")
        assert time.monotonic() - start < 10.0
