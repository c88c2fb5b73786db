"""An authenticated byte stream under Thespian's TCP transport: a challenge-response when a connection
opens, then every byte inside an HMAC-checked record, so nothing a peer without the cookie sends is
ever handed to Thespian (which unpickles it: a pickle is code).

The handshake (both sides prove they hold the key, each over the other's fresh nonce)::

    client → server   MAGIC · Nc                                  (on its first send)
    server → client   MAGIC · Ns · HMAC(key, "server" · Nc · Ns)
    client → server   HMAC(key, "client" · Ns · Nc)               (then its records)

Then each side's bytes travel as records ``length · HMAC(k_dir, seq · data) · data``, with a key per
direction derived from both nonces and an implicit sequence number, so a record cannot be forged,
altered, replayed from another connection, reordered or reflected back. A check that fails closes
the connection (counted, logged once per peer and reason). Confidentiality is not the aim of the records:
they are readable on the wire unless the cluster uses TLS (:mod:`supervision.tls`), which runs beneath
them: its handshake (certificates both ways) comes first, then everything above travels encrypted.

:class:`SecureSocket` is a ``socket.socket`` (Thespian checks ``isinstance``) whose ``send`` and
``recv`` speak this protocol with Thespian's non-blocking calling conventions: ``send`` returns how
many of the caller's bytes it took (0 while the handshake waits on the peer), ``recv`` returns only
authenticated bytes, and raises :class:`NoFrameBytesYet` when it consumed bytes that did not yet
complete a record. The key is process-wide (:func:`use_key`): processes the actor system forks
inherit it in memory, and the TLS contexts (:func:`use_key`'s ``tls``) with it.
"""

from __future__ import annotations

import collections
import enum
import errno
import hmac
import os
import socket
import ssl
import struct
import threading

import structlog

from .errors import SupervisionError
from .tls import TlsConfig

MAGIC = b"DSX1"
NONCE = 16
MAC = 32  # HMAC-SHA256
CLIENT_HELLO = len(MAGIC) + NONCE
SERVER_HELLO = len(MAGIC) + NONCE + MAC
HEAD = struct.Struct(">I")
RECORD_HEAD = HEAD.size + MAC
MAX_RECORD = 1 << 20  # bytes of data in one record; a frame is split over as many as it needs
READ_SIZE = 1 << 16  # bytes read at once (a 256 KiB buffer a read cost ~35 µs a frame in allocation alone)

log = structlog.get_logger("supervision")


class Phase(enum.Enum):
    """Where a connection is in its handshake."""

    FRESH = 1  # client: nothing sent yet
    AWAIT_SERVER = 2  # client: hello sent, waiting for the server's nonce and proof
    AWAIT_CLIENT = 3  # server: accepted, waiting for the client's hello
    AWAIT_PROOF = 4  # server: hello sent, waiting for the client's proof
    OPEN = 5  # both proved: records flow
    FAILED = 6  # a check failed: the connection is closed


class Rejection(enum.Enum):
    """Why a connection was closed (the value is what the log says)."""

    NO_HANDSHAKE = "no handshake (not a dspex peer, or an old one)"
    WRONG_COOKIE = "a wrong cookie (or none)"
    SERVER_COOKIE = ("the peer holds another cluster cookie: give every host the same one "
                     "(copy ~/.dspex/cookie, or set DSPEX_COOKIE)")
    OVERSIZED = "a record larger than any sender makes"
    FORGED = "a record that fails its HMAC"
    TLS = ("a failed TLS handshake or record: the peer does not use TLS, or its certificate is not signed by "
           "the cluster's CA (give every host the same --tls-ca, and certificates it signed)")


class NoFrameBytesYet(BlockingIOError):
    """``recv`` read bytes off the wire (handshake, part of a record) but has none for the caller yet."""

    def __init__(self) -> None:
        super().__init__(errno.EAGAIN, "no authenticated bytes yet")


_key: bytes | None = None
_tls: TlsConfig | None = None
_contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None = None  # (server, client), made from _tls
_holders = 0
_lock = threading.Lock()
rejections: collections.Counter = collections.Counter()  # Rejection → connections closed in this process
_logged: set = set()


def use_key(key: bytes, tls: TlsConfig | None = None) -> None:
    """Make ``key`` this process's cluster key, and ``tls`` its TLS setting (None: no TLS); one of each per
    process: another while one is in use raises :class:`~supervision.errors.SupervisionError`. Pair with
    :func:`release_key`."""
    global _key, _holders
    with _lock:
        if _key is not None and _holders and not hmac.compare_digest(_key, key):
            raise SupervisionError("a runtime with another cluster cookie is running in this process: one cookie "
                                   "per process (close it first, or give both the same cookie)")
        if _key is not None and _holders and tls != _tls:
            raise SupervisionError("a runtime with another TLS setting is running in this process: one per "
                                   "process (close it first, or give both the same TlsConfig)")
        _set_tls(tls)
        _key, _holders = key, _holders + 1


def _set_tls(tls: TlsConfig | None) -> None:
    global _tls, _contexts
    if tls != _tls or (tls is not None and _contexts is None):
        _contexts = tls.contexts() if tls is not None else None  # a TlsError before anything changes
        _tls = tls


def inherit_tls(tls: TlsConfig | None) -> None:
    """Set the TLS setting without holding it (a process talking to a system another one started)."""
    with _lock:
        _set_tls(tls)


def current_tls() -> TlsConfig | None:
    return _tls


def release_key() -> None:
    """One holder of the key is done (the key stays for processes still talking through it)."""
    global _holders
    with _lock:
        _holders = max(0, _holders - 1)


def inherit_key(key: bytes | None) -> None:
    """Set the key without holding it (a helper process told the key by its owner); None unsets it."""
    global _key
    with _lock:
        _key = key


def current_key() -> bytes | None:
    return _key


def _need_key() -> bytes:
    if _key is None:
        raise SupervisionError("no cluster cookie in this process: start the actor system through "
                               "supervision.ActorRuntime / Node, which install it")
    return _key


class _TlsLayer:
    """One connection's TLS, over memory buffers: the socket's bytes go in and out through it."""

    def __init__(self, context: ssl.SSLContext, server: bool) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=server)
        self.started = False  # the handshake has begun (a client's first flight is out)
        self.ready = False  # the handshake is done: the protocol's bytes flow


class SecureSocket(socket.socket):
    """A TCP socket whose traffic is the authenticated protocol of the module docstring (inside TLS when
    the process uses it: :func:`use_key`'s ``tls``)."""

    def __init__(self, *args, server: bool = False, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self._k = _need_key()
        self._phase = Phase.AWAIT_CLIENT if server else Phase.FRESH
        self._raw = bytearray()
        self._out = bytearray()  # the protocol's bytes not yet handed on (to TLS, or to the socket)
        self._wire = bytearray()  # TLS's bytes not yet on the socket
        self._out_taken = 0  # caller's bytes in a record still in _out (reported once it is on the wire)
        self._nonce = os.urandom(NONCE)
        self._peer_nonce = b""
        self._seal_key = self._open_key = b""
        self._seal_seq = self._open_seq = 0
        contexts = _contexts
        self._tls = _TlsLayer(contexts[0 if server else 1], server) if contexts is not None else None

    @classmethod
    def accepted(cls, sock: socket.socket) -> "SecureSocket":
        """The server side of a connection ``accept`` returned (its descriptor moves over)."""
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach(), server=True)

    @classmethod
    def connected(cls, sock: socket.socket) -> "SecureSocket":
        """The client side of a socket already connected (its descriptor moves over)."""
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    @property
    def awaiting_peer(self) -> bool:
        """True while a client can only wait for the server's answer (the transport then selects on read)."""
        if self._tls is not None and not self._tls.ready:
            return self._tls.started and not self._wire  # its part of the TLS handshake is out
        return self._phase is Phase.AWAIT_SERVER and not self._pending

    @property
    def _pending(self) -> bool:
        return bool(self._out or self._wire)

    # --- the calls Thespian makes ------------------------------------------------------------------

    def send(self, data, flags: int = 0) -> int:  # type: ignore[override]
        if self._tls is not None and not self._tls.ready:
            if self._phase is not Phase.FAILED:
                self._tls_step(take=True)
            if self._phase is Phase.FAILED:
                raise ConnectionResetError(errno.ECONNRESET, "the peer failed TLS authentication")
            if not self._tls.ready:
                return 0
        if self._pending:
            self._flush()
            if self._pending:
                return 0
            if self._out_taken:
                taken, self._out_taken = self._out_taken, 0
                return taken
        if self._phase is Phase.FRESH:
            self._out += MAGIC + self._nonce
            self._phase = Phase.AWAIT_SERVER
            self._flush()
            return 0
        if self._phase is Phase.AWAIT_SERVER:
            try:
                chunk = self._read(READ_SIZE)
            except BlockingIOError:
                return 0
            if not chunk:
                raise ConnectionResetError(errno.ECONNRESET, "the peer closed the connection during authentication")
            self._raw += chunk
            self._absorb()
            if self._phase is Phase.FAILED:
                raise ConnectionResetError(errno.ECONNRESET, "the peer failed authentication")
        if self._phase is not Phase.OPEN:
            return 0
        chunk = bytes(data[:MAX_RECORD])
        self._out += self._seal(chunk)
        self._flush()
        if self._pending:
            self._out_taken = len(chunk)
            return 0
        return len(chunk)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:  # type: ignore[override]
        if self._pending:
            self._flush()
        chunk = self._read(max(bufsize, READ_SIZE))
        if not chunk or self._phase is Phase.FAILED:
            return b""
        self._raw += chunk
        data = self._absorb()
        if self._phase is Phase.FAILED:
            return b""  # read as "closed": Thespian drops the connection
        if not data:
            raise NoFrameBytesYet()
        return data

    # --- the wire: the socket, or TLS over it ------------------------------------------------------

    def _read(self, size: int) -> bytes:
        """The protocol's bytes that arrived (b"": the peer closed, or TLS failed); BlockingIOError when
        none has (:class:`NoFrameBytesYet` when only TLS's own bytes came)."""
        chunk = super().recv(size)
        tls = self._tls
        if tls is None or not chunk:
            return chunk
        tls.incoming.write(chunk)
        if not tls.ready and not self._tls_step():
            if self._phase is Phase.FAILED:
                return b""
            raise NoFrameBytesYet()
        data = bytearray()
        while True:
            try:
                piece = tls.obj.read(size)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the peer closed its TLS: what came before is still its
                break
            except ssl.SSLError:
                self._fail(Rejection.TLS)
                return b""
            if not piece:
                break
            data += piece
        if not data:
            raise NoFrameBytesYet()
        return bytes(data)

    def _tls_step(self, take: bool = False) -> bool:
        """Advance the TLS handshake with what has arrived (``take``: first read what the socket holds, as
        a client's send does); True once it is done. A failure fails the connection."""
        tls = self._tls
        assert tls is not None
        if take:
            try:
                chunk = super().recv(READ_SIZE)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                self._fail(Rejection.TLS)
                return False
            if chunk:
                tls.incoming.write(chunk)
        tls.started = True
        try:
            tls.obj.do_handshake()
            tls.ready = True
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            self._fail(Rejection.TLS)
        self._flush()  # its next flight (or its alert)
        return tls.ready

    # --- the protocol ------------------------------------------------------------------------------

    def _absorb(self) -> bytes:
        """Advance the handshake and open every complete record in ``_raw``; returns their data."""
        raw, out = self._raw, bytearray()
        while True:
            phase = self._phase
            if phase is Phase.OPEN:
                if len(raw) < RECORD_HEAD:
                    break
                (size,) = HEAD.unpack_from(raw)
                if size > MAX_RECORD:
                    return self._fail(Rejection.OVERSIZED)
                if len(raw) < RECORD_HEAD + size:
                    break
                body = bytes(raw[RECORD_HEAD:RECORD_HEAD + size])
                expected = hmac.digest(self._open_key, self._open_seq.to_bytes(8, "big") + body, "sha256")
                if not hmac.compare_digest(expected, bytes(raw[HEAD.size:RECORD_HEAD])):
                    return self._fail(Rejection.FORGED)
                self._open_seq += 1
                out += body
                del raw[:RECORD_HEAD + size]
            elif phase is Phase.AWAIT_CLIENT:
                if raw[:len(MAGIC)] != MAGIC[:len(raw)]:
                    return self._fail(Rejection.NO_HANDSHAKE)
                if len(raw) < CLIENT_HELLO:
                    break
                self._peer_nonce = bytes(raw[len(MAGIC):CLIENT_HELLO])
                del raw[:CLIENT_HELLO]
                proof = hmac.digest(self._k, b"server" + self._peer_nonce + self._nonce, "sha256")
                self._out += MAGIC + self._nonce + proof
                self._flush()
                self._phase = Phase.AWAIT_PROOF
            elif phase is Phase.AWAIT_PROOF:
                if len(raw) < MAC:
                    break
                expected = hmac.digest(self._k, b"client" + self._nonce + self._peer_nonce, "sha256")
                if not hmac.compare_digest(expected, bytes(raw[:MAC])):
                    return self._fail(Rejection.WRONG_COOKIE)
                del raw[:MAC]
                self._open(client_nonce=self._peer_nonce, server_nonce=self._nonce, server=True)
            elif phase is Phase.AWAIT_SERVER:
                if len(raw) < SERVER_HELLO:
                    break
                if raw[:len(MAGIC)] != MAGIC:
                    return self._fail(Rejection.NO_HANDSHAKE)
                server_nonce = bytes(raw[len(MAGIC):len(MAGIC) + NONCE])
                expected = hmac.digest(self._k, b"server" + self._nonce + server_nonce, "sha256")
                if not hmac.compare_digest(expected, bytes(raw[len(MAGIC) + NONCE:SERVER_HELLO])):
                    return self._fail(Rejection.SERVER_COOKIE)
                del raw[:SERVER_HELLO]
                self._out += hmac.digest(self._k, b"client" + server_nonce + self._nonce, "sha256")
                self._open(client_nonce=self._nonce, server_nonce=server_nonce, server=False)
            else:
                break
        return bytes(out)

    def _open(self, client_nonce: bytes, server_nonce: bytes, server: bool) -> None:
        session = hmac.digest(self._k, b"session" + client_nonce + server_nonce, "sha256")
        to_server = hmac.digest(session, b"client to server", "sha256")
        to_client = hmac.digest(session, b"server to client", "sha256")
        self._seal_key, self._open_key = (to_client, to_server) if server else (to_server, to_client)
        self._phase = Phase.OPEN

    def _seal(self, data: bytes) -> bytes:
        mac = hmac.digest(self._seal_key, self._seal_seq.to_bytes(8, "big") + data, "sha256")
        self._seal_seq += 1
        return HEAD.pack(len(data)) + mac + data

    def _flush(self) -> None:
        """Hand on what is pending: the protocol's bytes (through TLS once its handshake is done), and the
        wire's, as far as the socket takes them."""
        tls = self._tls
        if tls is None:
            buffer = self._out
        else:
            if tls.ready and self._out:
                tls.obj.write(bytes(self._out))
                self._out.clear()
            if tls.outgoing.pending:
                self._wire += tls.outgoing.read()
            buffer = self._wire
        while buffer:
            try:
                sent = super().send(buffer)
            except BlockingIOError:
                return
            del buffer[:sent]

    def _fail(self, reason: Rejection) -> bytes:
        self._phase = Phase.FAILED
        self._raw.clear()
        rejections[reason] += 1
        try:
            name = self.getpeername()
            peer = name[0] if isinstance(name, tuple) else str(name) or "local"
        except OSError:
            peer = "?"
        if (peer, reason) not in _logged:  # once per peer and reason: a flood does not flood the log
            _logged.add((peer, reason))
            log.warning("connection_rejected", peer=peer, reason=reason.value)
        return b""
