"""The cluster cookie and the authenticated channel: nobody without the cookie gets a byte to Thespian's unpickler."""

from __future__ import annotations

import glob
import hmac
import multiprocessing
import os
import pickle
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from supervision import ActorRef, ActorRuntime, ChildSpec, Cookie, CookieError, SupervisorSpec, channel
from supervision import cookie as cookies
from tests.dspex.subreaper import descendants
from tests.supervision.actors import Counter
from tests.supervision.attacker import frame

ROOT = Path(__file__).resolve().parents[2]
SECRET = "correct horse battery staple, twice"


# --- the cookie ---------------------------------------------------------------------------------------

def test_the_cookie_comes_from_the_argument_then_the_environment_then_the_file_made_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setattr(cookies, "DEFAULT_COOKIE_FILE", tmp_path / "home" / ".dspex" / "cookie")
    made = cookies.resolve(environ={})
    path = tmp_path / "home" / ".dspex" / "cookie"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_text().strip()) >= 32
    assert cookies.resolve(environ={}) == made  # the same file next time
    from_env = cookies.resolve(environ={"DSPEX_COOKIE": SECRET})
    assert from_env != made and from_env.source == "$DSPEX_COOKIE"
    assert cookies.resolve(SECRET, environ={}) == from_env
    other = tmp_path / "other"
    other.write_text(SECRET + "\n")
    other.chmod(0o600)
    assert cookies.resolve(cookie_file=other, environ={"DSPEX_COOKIE": "x" * 20}) == from_env


def _fingerprint_of(path: Path, out: "multiprocessing.Queue") -> None:
    out.put(cookies.read_file(path, create=True).fingerprint)


def test_processes_making_the_cookie_at_once_all_read_the_same_one(tmp_path):
    path = tmp_path / "fresh" / "cookie"
    out = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_fingerprint_of, args=(path, out)) for _ in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert len({out.get(timeout=5) for _ in procs}) == 1  # nobody read a half-written file
    assert [p.name for p in path.parent.iterdir()] == ["cookie"]  # nothing left aside


def test_a_bad_cookie_is_refused_with_the_fix(tmp_path):
    loose = tmp_path / "loose"
    loose.write_text(SECRET)
    loose.chmod(0o644)
    with pytest.raises(CookieError, match="chmod 600"):
        cookies.resolve(cookie_file=loose)
    with pytest.raises(CookieError, match="at least 16"):
        Cookie("short")
    with pytest.raises(CookieError, match="no cookie file"):
        cookies.resolve(cookie_file=tmp_path / "missing")
    with pytest.raises(CookieError, match="either"):
        cookies.resolve(SECRET, cookie_file=loose)


def test_the_secret_is_never_shown_or_pickled():
    cookie = Cookie(SECRET, "test")
    assert SECRET not in repr(cookie) and cookie.fingerprint in repr(cookie)
    with pytest.raises(TypeError, match="never travels"):
        pickle.dumps(cookie)


# --- the channel, end to end over a socket pair -------------------------------------------------------

@pytest.fixture
def keyed():
    before = channel.current_key()
    channel.inherit_key(Cookie(SECRET).key)
    yield
    channel.inherit_key(before)


def non_blocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    return sock


def pair() -> tuple[channel.SecureSocket, channel.SecureSocket]:
    a, b = socket.socketpair()
    return non_blocking(channel.SecureSocket.connected(a)), non_blocking(channel.SecureSocket.accepted(b))


def pump(client: channel.SecureSocket, server: channel.SecureSocket, data: bytes) -> bytes:
    """Send ``data`` client → server the way Thespian does (re-offering what was not taken); what arrives."""
    sent, got = 0, b""
    for _ in range(10_000):
        if sent < len(data):
            sent += client.send(data[sent:])
        try:
            chunk = server.recv(1024)
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            return got
        got += chunk or b""
        if sent == len(data) and len(got) >= len(data):
            return got
    raise AssertionError("no progress")


def test_authenticated_bytes_flow_both_ways_in_records_of_any_size(keyed):
    client, server = pair()
    big = os.urandom(3 * channel.MAX_RECORD + 5)
    assert pump(client, server, b"12>hello world") == b"12>hello world"
    assert pump(client, server, big) == big
    assert pump(server, client, b"3>ACK") == b"3>ACK"  # the accepted side sends back on the same connection
    client.close()
    server.close()


def test_a_peer_with_another_cookie_is_closed_before_any_byte_reaches_the_caller(keyed):
    client, server = pair()
    before = channel.rejections[channel.Rejection.SERVER_COOKIE]
    server._k = Cookie("another secret, just as long").key  # the server's process holds another cookie
    with pytest.raises(ConnectionResetError, match="authentication"):
        pump(client, server, b"5>hello")
    assert channel.rejections[channel.Rejection.SERVER_COOKIE] == before + 1
    client.close()  # what Thespian does with a send that raised
    assert server.recv(1024) == b""

    raw, b = socket.socketpair()  # a client that guesses: it answers the server's nonce with another key
    server = non_blocking(channel.SecureSocket.accepted(b))
    before = channel.rejections[channel.Rejection.WRONG_COOKIE]
    nonce = os.urandom(channel.NONCE)
    raw.sendall(channel.MAGIC + nonce)
    with pytest.raises(BlockingIOError):
        server.recv(1024)  # answered with the server's nonce and proof
    server_nonce = raw.recv(channel.SERVER_HELLO)[len(channel.MAGIC):][:channel.NONCE]
    guess = hmac.digest(b"g" * 32, b"client" + server_nonce + nonce, "sha256")
    raw.sendall(guess + frame("anything"))
    assert server.recv(1024) == b""  # closed before the frame behind the proof is even looked at
    assert channel.rejections[channel.Rejection.WRONG_COOKIE] == before + 1


def test_a_tampered_or_replayed_record_closes_the_connection(keyed):
    client, server = pair()
    assert pump(client, server, b"first") == b"first"
    record = client._seal(b"second")
    tampered = record[:-1] + bytes([record[-1] ^ 1])
    socket.socket.send(client, tampered)
    time.sleep(0.01)
    assert server.recv(1024) == b""  # read as closed: Thespian drops the connection

    # everything a client sent on one connection, replayed on a new one, fails the proof (a new server nonce)
    near, relay_in = socket.socketpair()
    relay_out, far = socket.socketpair()
    client, server = channel.SecureSocket.connected(near), channel.SecureSocket.accepted(far)
    for end in (client, server, relay_in, relay_out):
        end.setblocking(False)
    recorded, got, sent = b"", b"", 0
    while got != b"payload":
        if sent < 7:
            sent += client.send(b"payload"[sent:])
        for src, dst in ((relay_in, relay_out), (relay_out, relay_in)):
            try:
                chunk = src.recv(65536)
            except BlockingIOError:
                continue
            recorded += chunk if src is relay_in else b""
            dst.sendall(chunk)
        try:
            got += server.recv(1024)
        except BlockingIOError:
            pass
    x, y = socket.socketpair()
    victim = non_blocking(channel.SecureSocket.accepted(y))
    x.sendall(recorded)
    time.sleep(0.01)
    assert victim.recv(1024) == b""


# --- real systems, attacked from a process without the cookie -------------------------------------------

def runtime_ports(rt: ActorRuntime, *actors: ActorRef) -> set[tuple[str, int]]:
    """The ports a process base runtime listens on, by Thespian's own account: its admin and logger (named
    in their process titles), its root and ``actors``, and the endpoints this process talks through. (Its
    processes also hold listening sockets inherited at fork, which nobody there serves: not targets.)"""
    session = os.getsid(rt._root_pid)
    ports = {rt.admin_port, rt.root.addressDetails.sockname[1]}
    ports |= {ref.address.addressDetails.sockname[1] for ref in actors}
    for pid in descendants(os.getpid()):
        if _sid(pid) == session:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                ports |= {int(p) for p in re.findall(rb"ActorAddr-\(T\|:(\d+)\)", fh.read())}
    return {(rt.bind_host, port) for port in ports} | endpoint_ports(rt)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def endpoint_ports(rt: ActorRuntime) -> set[tuple[str, int]]:
    """The ports of the endpoints this process talks to a runtime through."""
    return {ep.system._systemBase.transport.socket.getsockname()[:2] for ep in rt._pool + rt._clones}


@pytest.fixture(params=["multiproc", "tcp"])
def prt(request):
    with ActorRuntime(base=request.param, name="auth") as runtime:
        yield runtime


def test_a_process_without_the_cookie_gets_nothing_unpickled_on_any_port(prt, tmp_path):
    marker = str(tmp_path / "loaded")
    sup = prt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)])
    assert sup.child("c").call("incr") == 1
    ports = runtime_ports(prt, sup, sup.child("c"))
    own = {f"{ip}:{port}" for ip, port in endpoint_ports(prt)}
    assert len(ports) == 6  # the admin, its logger, the root, the supervisor, the child, this process's endpoint
    env = {k: v for k, v in os.environ.items() if k != "DSPEX_COOKIE"}
    attacker = subprocess.Popen([sys.executable, "-m", "tests.supervision.attacker", marker,
                                 f"127.0.0.1:{prt.admin_port}", *(f"{ip}:{port}" for ip, port in sorted(ports))],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    calls = 1
    try:
        while attacker.poll() is None:  # this process's own endpoint is served while it calls
            calls += 1
            assert sup.child("c").call("incr") == calls  # the same actor, alive all along
        out, err = attacker.communicate(timeout=120)
    finally:
        if attacker.poll() is None:
            attacker.kill()
            attacker.wait()
    assert attacker.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == len(ports), lines
    for line in lines:  # the actor processes close every attempt; this process's endpoints read nothing unless
        target, counts = line.split(" ", 1)  # a thread of it is calling through them (then they close too)
        assert counts == "closed 8 silent 0 answered 0" or (target in own and counts.endswith(" answered 0")), line
    assert sup.child("c").call("incr") == calls + 1 and prt.failures == []
    prt.close()  # whatever still waits on this process's endpoints is read as they close...
    assert not glob.glob(f"{marker}*")  # ...and nothing it sent was unpickled, anywhere
    with ActorRuntime(prt.base, "next") as again:  # and the next run works
        assert again.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)]).child("c").call("incr") == 1


def test_an_authenticated_peer_cannot_kill_the_system_with_a_malformed_frame(prt):
    """With the cookie, a frame whose sender is not an address (it made a leader's system exit) or that is
    not an envelope at all is refused (Thespian's "data error" answer) and the system lives on."""
    sup = prt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)])
    for payload in (frame(("not an address", "hello")), frame(42), frame((None, "hello"))):
        assert b"ACK+DATAERR" in authenticated_exchange("127.0.0.1", prt.admin_port, payload)
    assert sup.child("c").call("incr") == 1
    assert prt.failures == []


def authenticated_exchange(host: str, port: int, payload: bytes) -> bytes:
    """Send ``payload`` as a cookie holder; what comes back before the target closes the connection (or 10 s)."""
    sock = channel.SecureSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect((host, port))
    answer, sent, deadline = b"", 0, time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            if sent < len(payload) or sock._out:
                sent += sock.send(payload[sent:])
                continue
            try:
                chunk = sock.recv(4096)
            except (BlockingIOError, TimeoutError):
                continue
            if not chunk:
                break
            answer += chunk
            if b"ACK" in answer:  # the whole answer: one acknowledgement frame
                break
    finally:
        sock.close()
    return answer


def test_a_process_with_another_cookie_cannot_attach():
    code = ("import sys; from supervision import ActorRuntime\n"
            "try:\n"
            "    rt = ActorRuntime.attach(int(sys.argv[1]), None)\n"
            "    rt._system.ask(rt._system._systemBase.adminAddr, 'status?', 3)\n"
            "except Exception as exc:\n"
            "    print('refused', type(exc).__name__)\n"
            "else:\n"
            "    print('no answer')\n")
    env = {**os.environ, "DSPEX_COOKIE": "a cookie nobody here holds"}
    with ActorRuntime("multiproc", "auth") as rt:
        out = subprocess.run([sys.executable, "-c", code, str(rt.admin_port)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.stdout.splitlines()[-1].split()[:1] in (["refused"], ["no answer"]), out.stdout + out.stderr
        assert "another cluster cookie" in out.stdout  # said once, with the fix
        assert rt.failures == []


def test_actor_ports_come_from_the_configured_range_for_a_firewall():
    """Every port a runtime listens on but its admin's is in ``actor_ports`` (actors, Thespian's logger,
    this process's endpoints); a range too small to hold them fails with the fix; a bad range is refused."""
    import os as _os

    from supervision import SpecError, SupervisionError

    saved = _os.environ.get("SUPERVISION_ACTOR_PORTS")
    try:
        with ActorRuntime("tcp", "ranged", actor_ports=(21400, 21449)) as rt:
            sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id=f"c{i}", start=Counter) for i in range(3)])
            assert [sup.child(f"c{i}").call("incr") for i in range(3)] == [1, 1, 1]
            ports = {port for _, port in runtime_ports(rt, sup, *(sup.child(f"c{i}") for i in range(3)))}
            assert len(ports) == 8 and rt.admin_port in ports
            assert all(21400 <= port <= 21449 for port in ports - {rt.admin_port}), sorted(ports)
        with pytest.raises((SupervisionError, OSError)):
            with ActorRuntime("multiproc", "tiny", actor_ports="21450-21451") as rt:
                rt.start_supervisor(SupervisorSpec(), [ChildSpec(id=f"c{i}", start=Counter) for i in range(3)])
    finally:
        if saved is None:
            _os.environ.pop("SUPERVISION_ACTOR_PORTS", None)
        else:
            _os.environ["SUPERVISION_ACTOR_PORTS"] = saved
    with pytest.raises(SpecError, match="first-last"):
        ActorRuntime("tcp", actor_ports="20000:20999")
