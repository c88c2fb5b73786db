"""A local GGUF model (llama-cpp-python) behind an OpenAI-compatible chat endpoint, in its own process.

    python -m dspex.local.server --model PATH [--port 0] [--n-ctx 2048] [--threads 2]

Prints its URL on the first line of stdout, then serves ``POST /v1/chat/completions`` on 127.0.0.1.
It exits when its stdin reaches end-of-file, so it never outlives the actor that owns it (even after
that actor is killed with -9). One model instance answers one request at a time (llama.cpp contexts
are not thread-safe); callers queue on a lock.

``prompt_format`` in the request body: ``"chat"`` (the default) applies the model's chat template;
``"raw"`` joins the message contents and continues the text (completion style, which small models
follow far better for ``Field: value`` prompts; measured in benchmarks/README.md). A raw completion ends at the
first blank line *after some text*: blank lines before the answer are skipped, never the answer.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

RAW_END = "\n\n"  # a raw completion's end: the first blank line after some text


def cut_raw(text: str) -> tuple[str, bool]:
    """The answer in a raw continuation: leading blank lines dropped, cut at the next blank line
    (``True`` when the cut was made, i.e. generation may stop)."""
    body = text.lstrip("\n")
    end = body.find(RAW_END)
    return (body, False) if end < 0 else (body[:end], True)


class _Model:
    def __init__(self, path: str, n_ctx: int, threads: int, seed: int) -> None:
        from llama_cpp import Llama

        self.name = path.rsplit("/", 1)[-1]
        self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, seed=seed, verbose=False)
        self.lock = threading.Lock()

    def complete(self, body: dict, gone: Callable[[], bool] = lambda: False) -> dict | None:
        """The answer; None when the caller hung up while the request waited for the model (a client whose
        timeout ran out): nothing is generated for nobody."""
        messages = body["messages"]
        params = {"temperature": float(body.get("temperature", 0.0)), "max_tokens": int(body.get("max_tokens", 256))}
        stop = body.get("stop")
        with self.lock:
            if gone():
                return None
            if body.get("prompt_format", "chat") == "raw":
                return self._raw(messages, stop, params)
            out = self.llm.create_chat_completion(messages=messages, stop=stop, **params)
            text = out["choices"][0]["message"]["content"] or ""
        return self._answer(text, out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"],
                            out["choices"][0].get("finish_reason", "stop"))

    def _raw(self, messages: list, stop: Any, params: dict) -> dict:
        """Stream the continuation and stop at the raw end rule (or the caller's own ``stop``)."""
        prompt = "\n\n".join(m["content"] for m in messages)
        prompt_tokens = len(self.llm.tokenize(prompt.encode("utf-8")))
        text, count, reason = "", 0, "length"
        for chunk in self.llm.create_completion(prompt, stop=stop, stream=True, **params):
            count += 1
            text += chunk["choices"][0]["text"]
            if chunk["choices"][0].get("finish_reason"):
                reason = chunk["choices"][0]["finish_reason"]
                break
            if cut_raw(text)[1]:
                reason = "stop"
                break
        return self._answer(cut_raw(text)[0], prompt_tokens, count, reason)

    def _answer(self, text: str, prompt_tokens: int, completion_tokens: int, reason: str) -> dict:
        return {"id": "local", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                  "finish_reason": reason}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model: _Model

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Quiet: the client actor logs every request."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        """``/health``: answered without the model lock, so it shows the process is alive while it works."""
        if self.path in ("/health", "/v1/health"):
            return self._send(200, {"status": "ok"})
        return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib's name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        try:
            body = json.loads(raw)
            answer = self.model.complete(body, self._caller_gone)
        except (ValueError, KeyError, TypeError) as exc:
            return self._send(400, {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}})
        if answer is None:
            self.close_connection = True
            return None
        return self._send(200, answer)

    def _caller_gone(self) -> bool:
        """Whether the caller closed its connection (a request is all it sends, so anything readable now is
        its end of the stream)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        head = (f"HTTP/1.1 {status} {self.responses[status][0]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        try:
            self.connection.sendall(head + payload)
        except (BrokenPipeError, ConnectionResetError):  # the caller gave up (its timeout): its client retries
            self.close_connection = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="serve a GGUF model on 127.0.0.1 (OpenAI chat format)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--title", default="dspex: model")
    args = parser.parse_args(argv)
    try:
        import setproctitle

        setproctitle.setproctitle(args.title)
    except ImportError:
        pass  # only the process title is lost
    _Handler.model = _Model(args.model, args.n_ctx, args.threads, args.seed)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler, bind_and_activate=False)
    httpd.daemon_threads = True
    httpd.allow_reuse_address = True  # a restart binds the same port again at once
    httpd.server_bind()
    httpd.server_activate()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print(f"http://127.0.0.1:{httpd.server_address[1]}", flush=True)
    sys.stdin.read()  # until the owner closes the pipe or dies
    httpd.shutdown()
    httpd.server_close()


if __name__ == "__main__":
    main()
