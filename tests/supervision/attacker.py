"""A local process without the cookie, doing what the issue's adversary did to every open actor port.

    python -m tests.supervision.attacker MARKER MEMBER_IP:PORT HOST:PORT [HOST:PORT ...]

For each target port it opens fresh connections and sends, as Thespian frames (``size>pickle``): a pickle
that runs code when loaded (a :class:`~tests.supervision.probe.LoadMarker`), the same inside a well-formed
envelope, a frame whose sender is not an address (the one that made a leader's system exit), garbage, a
fake convention register, a spoofed de-register of ``MEMBER``; and it speaks the authenticated protocol
with a guessed cookie. Prints one line per target: ``HOST:PORT closed C silent S answered A`` — of its
connections, how many the target closed, left without a word for a second, or answered (Thespian
acknowledges a frame it took: that would be a breach).
"""

from __future__ import annotations

import hmac
import os
import pickle
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

from thespian.actors import ActorAddress
from thespian.system.messages.convention import ConventionDeRegister, ConventionRegister
from thespian.system.transport.IPBase import TCPv4ActorAddress

from supervision.channel import CLIENT_HELLO, MAC, MAGIC, NONCE, SERVER_HELLO
from tests.supervision.probe import LoadMarker


def frame(obj: object) -> bytes:
    data = pickle.dumps(obj)
    return b"%d>" % len(data) + data


def address(spec: str) -> ActorAddress:
    host, port = spec.rsplit(":", 1)
    return ActorAddress(TCPv4ActorAddress(host, int(port), external=True))


def payloads(marker: str, member: str) -> list[bytes]:
    me, victim = address("127.0.0.1:1"), address(member)
    return [
        frame(LoadMarker(marker)),
        frame((me, LoadMarker(marker))),
        frame(("not an address", "hello")),
        os.urandom(64),
        b"12>" + b"\x80" * 12,
        frame((me, ConventionRegister(me, {"phantom": LoadMarker(marker)}, firstTime=True))),
        frame((victim, ConventionDeRegister(victim))),
    ]


def listening_ports(pids: set[int] | list[int]) -> set[tuple[str, int]]:
    """(ip, port) of the TCP sockets the processes ``pids`` listen on (their socket inodes, looked up in
    each process's own view of the network: a process in another namespace is seen as it sees itself)."""
    found = set()
    for pid in pids:
        inodes = set()
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
            with open(f"/proc/{pid}/net/tcp") as fh:
                rows = fh.readlines()[1:]
        except OSError:  # gone meanwhile
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ip_hex, port_hex = fields[1].split(":")
                ip = socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1])
                found.add((ip, int(port_hex, 16)))
    return found


def outcome(sock: socket.socket) -> str:
    try:
        return "closed" if sock.recv(4096) == b"" else "answered"
    except ConnectionResetError:
        return "closed"
    except socket.timeout:
        return "silent"


def send_raw(host: str, port: int, data: bytes) -> str:
    """Send ``data`` on a fresh connection: what the target did with it."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(data)
        return outcome(sock)


def guessed_cookie(host: str, port: int, data: bytes) -> str:
    """Speak the handshake with a wrong key, then send ``data``: what the target did with it."""
    key = b"g" * 32
    nonce = os.urandom(NONCE)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(MAGIC + nonce)
        hello = b""
        while len(hello) < SERVER_HELLO:
            try:
                more = sock.recv(SERVER_HELLO - len(hello))
            except socket.timeout:
                return "silent"
            except ConnectionResetError:
                return "closed"
            if not more:
                return "closed"
            hello += more
        server_nonce = hello[len(MAGIC):len(MAGIC) + NONCE]
        sock.sendall(hmac.digest(key, b"client" + server_nonce + nonce, "sha256")[:MAC] + data)
        return outcome(sock)


def main(argv: list[str]) -> int:
    marker, member, *targets = argv
    assert CLIENT_HELLO == len(MAGIC) + NONCE
    sent = payloads(marker, member)
    with ThreadPoolExecutor(max_workers=64) as pool:  # every connection at once: a silent port costs one timeout
        futures = {target: [pool.submit(send_raw, *split(target), p) for p in sent]
                   + [pool.submit(guessed_cookie, *split(target), sent[1])] for target in targets}
        for target, attempts in futures.items():
            outcomes = [f.result() for f in attempts]
            counts = " ".join(f"{kind} {outcomes.count(kind)}" for kind in ("closed", "silent", "answered"))
            print(f"{target} {counts}", flush=True)
    return 0


def split(target: str) -> tuple[str, int]:
    host, port = target.rsplit(":", 1)
    return host, int(port)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
