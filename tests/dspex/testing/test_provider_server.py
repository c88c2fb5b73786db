"""The simulator on its asyncio loop: thousands of connections at once on one thread, keep-alive, and the
faults that need the socket (a hung connection, a reset, a body cut short of its declared length)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest

from dspex.testing import Faults, ProviderServer

KEY = "sk-sim-0123456789"
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]}).encode()


def request(path: str = "/v1/chat/completions", body: bytes = BODY, close: bool = False) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


async def one(port: int) -> int:
    """One request on its own connection; the status answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request(close=True))
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        json.loads(await reader.readexactly(length))
        return int(head.split(b" ")[1])
    finally:
        writer.close()


@pytest.mark.slow
def test_three_thousand_connections_at_once_are_served_together_on_one_thread():
    n, latency = 3000, 2.0  # long enough for all of them to arrive within it, even on a loaded machine
    with ProviderServer(answer="hi", api_key=KEY, faults=Faults(latency=latency)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        threads = threading.active_count()

        async def all_at_once() -> list[int]:
            return await asyncio.gather(*(one(port) for _ in range(n)))

        most, done = [threads], threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                most.append(threading.active_count())

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.monotonic()
        try:
            statuses = asyncio.run(all_at_once())
        finally:
            wall = time.monotonic() - start
            done.set()
            sampler.join()
        assert max(most) <= threads + 1  # (the sampler): no thread per connection
        assert statuses == [200] * n and len(server.successes()) == n
        assert server.peak_concurrency >= 0.9 * n  # (nearly) all waiting out their latency together
    assert wall < latency + 8.0  # not n / threads × latency


def test_keep_alive_serves_requests_one_after_another_on_one_connection():
    with ProviderServer(answer="hi", api_key=KEY) as server, \
            socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=5) as sock:
        reader = sock.makefile("rb")
        for _ in range(3):
            sock.sendall(request())
            status = reader.readline()
            headers = {}
            while (line := reader.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            body = json.loads(reader.read(int(headers["content-length"])))
            assert status.startswith(b"HTTP/1.1 200") and body["choices"][0]["message"]["content"] == "hi"
        assert server.connections == 1 and len(server.log) == 3


def test_a_reset_is_a_reset_a_truncated_body_is_short_and_a_hung_connection_ends_when_the_server_closes():
    server = ProviderServer(answer="hello there", api_key=KEY).start()
    port = int(server.url.rsplit(":", 1)[1])
    try:
        server.set_faults(Faults(reset_rate=1.0))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request())
            with pytest.raises(ConnectionResetError):
                assert sock.recv(100) == b""  # (an orderly close would read b"")
        server.set_faults(Faults(truncate_rate=1.0))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            declared = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                if line.lower().startswith(b"content-length")))
            assert 0 < len(body) < declared
        server.set_faults(Faults(hang_rate=1.0, hang_s=60.0))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request())
            start = time.monotonic()
            threading.Timer(0.3, server.close).start()
            assert sock.recv(100) == b""  # nothing answered; the connection ends with the server
            assert time.monotonic() - start < 5
    finally:
        server.close()


def test_the_counters_are_read_over_http_by_a_harness_in_another_process():
    with ProviderServer(answer="hi", api_key=KEY) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert asyncio.run(one(port)) == 200
        import requests

        stats = requests.get(f"{server.url}/_sim/stats", timeout=5).json()
        assert stats == {"requests": 1, "in_flight": 0, "peak": 1, "connections": stats["connections"], "ok": 1}
        assert requests.get(f"{server.url}/_sim/stats?reset=1", timeout=5).json()["requests"] == 1
        assert requests.get(f"{server.url}/_sim/stats", timeout=5).json()["requests"] == 0 and not server.log
