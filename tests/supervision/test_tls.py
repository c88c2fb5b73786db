"""TLS beneath the authenticated channel (supervision.tls): encrypted on the wire, certificates checked both
ways, and every process of a system (actors, the watchdog, a node on another host) speaking it."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme

from supervision import ActorRuntime, ChildSpec, Cookie, SupervisorSpec, TlsConfig, TlsError, channel
from supervision import tls as tls_module
from tests.supervision.actors import Counter
from tests.supervision.pki import member
from tests.supervision.test_auth import SECRET, non_blocking, pump

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> SimpleNamespace:
    """Two members of one cluster CA, and a stranger whose certificate another CA signed."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    return SimpleNamespace(member=member(ca, folder, "member"), other=member(ca, folder, "other"),
                           stranger=member(trustme.CA(), folder, "stranger"), folder=folder)


@pytest.fixture
def keyed_tls(pki):
    before_key, before_tls = channel.current_key(), channel.current_tls()
    channel.inherit_key(Cookie(SECRET).key)
    channel.inherit_tls(pki.member)
    yield pki
    channel.inherit_key(before_key)
    channel.inherit_tls(before_tls)


def _ends(client_tls: TlsConfig | None, server_tls: TlsConfig | None) -> tuple[socket.socket, socket.socket]:
    """A connected client and server, each made while its process uses the given TLS setting."""
    a, b = socket.socketpair()
    channel.inherit_tls(client_tls)
    client = non_blocking(channel.SecureSocket.connected(a))
    channel.inherit_tls(server_tls)
    server = non_blocking(channel.SecureSocket.accepted(b))
    return client, server


def _relayed(client: socket.socket, server: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    """``data`` sent client → server through a relay that records the wire; (what arrived, the wire)."""
    near, relay_in = socket.socketpair()
    relay_out, far = socket.socketpair()
    client_end = non_blocking(channel.SecureSocket.connected(near))
    server_end = non_blocking(channel.SecureSocket.accepted(far))
    for end in (relay_in, relay_out):
        end.setblocking(False)
    wire, got, sent = b"", b"", 0
    deadline = time.monotonic() + 10
    while len(got) < len(data) and time.monotonic() < deadline:
        if sent < len(data):
            sent += client_end.send(data[sent:])
        for src, dst in ((relay_in, relay_out), (relay_out, relay_in)):
            try:
                chunk = src.recv(65536)
            except BlockingIOError:
                continue
            wire += chunk
            dst.sendall(chunk)
        try:
            got += server_end.recv(65536)
        except BlockingIOError:
            pass
    for end in (client_end, server_end, relay_in, relay_out):
        end.close()
    return got, wire


def test_bytes_flow_both_ways_encrypted_in_records_of_any_size(keyed_tls):
    client, server = _ends(keyed_tls.member, keyed_tls.other)
    big = os.urandom(3 * channel.MAX_RECORD + 5)
    assert pump(client, server, b"12>hello world") == b"12>hello world"
    assert pump(client, server, big) == big
    assert pump(server, client, b"3>ACK") == b"3>ACK"
    client.close()
    server.close()

    secret = b"a frame nobody on the wire may read " * 40
    got, wire = _relayed(client, server, secret)
    assert got == secret
    assert b"a frame nobody" not in wire and channel.MAGIC not in wire  # the cookie's handshake is inside TLS too

    channel.inherit_tls(None)  # without TLS, the records are readable (what TLS is for)
    got, wire = _relayed(client, server, secret)
    assert got == secret and b"a frame nobody" in wire


@pytest.mark.parametrize("client_side", ["stranger", "plain"])
def test_a_peer_without_a_certificate_of_the_cluster_ca_is_closed_before_any_byte_reaches_the_caller(
        keyed_tls, client_side):
    """A client whose certificate another CA signed, or one without TLS at all, against a member's server."""
    before = channel.rejections[channel.Rejection.TLS]
    client, server = _ends(keyed_tls.stranger if client_side == "stranger" else None, keyed_tls.member)
    try:
        assert pump(client, server, b"5>hello" * 100) == b""  # the server closed on it: nothing arrived
    except ConnectionResetError:
        pass  # the client learnt of the refusal first
    assert channel.rejections[channel.Rejection.TLS] >= before + 1
    client.close()
    try:
        assert server.recv(1024) == b""  # read as closed: Thespian drops the connection
    except OSError:
        pass  # (or the close itself)


def test_a_member_refuses_a_server_whose_certificate_another_ca_signed(keyed_tls):
    before = channel.rejections[channel.Rejection.TLS]
    client, server = _ends(keyed_tls.member, keyed_tls.stranger)
    with pytest.raises(ConnectionResetError):
        pump(client, server, b"5>hello")
    assert channel.rejections[channel.Rejection.TLS] == before + 1  # the client's own check


def test_the_setting_is_checked_with_the_fix(pki, tmp_path):
    with pytest.raises(TlsError, match="does not exist.*--tls-cert"):
        TlsConfig(tmp_path / "nope.crt", pki.member.key, pki.member.ca).contexts()
    with pytest.raises(TlsError, match="cannot use the TLS certificate"):  # another certificate's key
        TlsConfig(pki.member.cert, pki.other.key, pki.member.ca).contexts()
    with pytest.raises(TlsError, match="must be a path"):
        TlsConfig("", pki.member.key, pki.member.ca)
    env = {"DSPEX_TLS_CERT": pki.member.cert, "DSPEX_TLS_KEY": pki.member.key}
    with pytest.raises(TlsError, match="DSPEX_TLS_CA not set"):
        tls_module.resolve(env=env)
    assert tls_module.resolve(env={**env, "DSPEX_TLS_CA": pki.member.ca}) == pki.member
    assert tls_module.resolve(env={}) is None
    parser = argparse.ArgumentParser()
    tls_module.add_tls_arguments(parser)
    with pytest.raises(TlsError, match="--tls-key not given"):
        tls_module.tls_from_args(parser.parse_args(["--tls-cert", "a", "--tls-ca", "c"]))
    given = parser.parse_args(tls_module.to_args(pki.member))
    assert tls_module.tls_from_args(given) == pki.member

    from dspex import Settings
    from dspex.errors import ConfigError

    with pytest.raises(ConfigError, match="tls_key, tls_ca not set"):
        Settings.load(environ={"DSPEX_TLS_CERT": pki.member.cert}).tls()
    full = {"DSPEX_TLS_CERT": pki.member.cert, "DSPEX_TLS_KEY": pki.member.key, "DSPEX_TLS_CA": pki.member.ca}
    assert Settings.load(environ=full).tls() == pki.member


def _tls_env(tls: TlsConfig | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in tls_module.ENV.values()}
    if tls is not None:
        env.update({tls_module.ENV[name]: getattr(tls, name) for name in ("cert", "key", "ca")})
    return env


ATTACH = ("import sys; from supervision import ActorRuntime\n"
          "from thespian.system.messages.status import Thespian_StatusReq\n"
          "try:\n"
          "    rt = ActorRuntime.attach(int(sys.argv[1]), None)\n"
          "    answer = rt._system.ask(rt._system._systemBase.adminAddr, Thespian_StatusReq(), 3)\n"
          "except Exception as exc:\n"
          "    print('refused', type(exc).__name__)\n"
          "else:\n"
          "    print('answered' if answer is not None else 'no answer')\n")


@pytest.mark.slow
def test_a_multiproc_runtime_speaks_tls_between_all_its_processes(pki):
    """Every actor process (forked: it inherits the setting) talks TLS; a process with the cookie but without
    a certificate of the cluster's CA gets no answer; one given the setting through the environment does."""
    before = channel.current_tls()
    try:
        with ActorRuntime("multiproc", "tls", tls=pki.member) as rt:
            sup = rt.start_supervisor(SupervisorSpec(), [ChildSpec(id="c", start=Counter)], name="top")
            assert [sup.child("c").call("incr") for _ in range(3)] == [1, 2, 3]
            for tls, said in ((None, ("refused", "no answer")), (pki.stranger, ("refused", "no answer")),
                              (pki.other, ("answered",))):
                out = subprocess.run([sys.executable, "-c", ATTACH, str(rt.admin_port)], cwd=ROOT, env=_tls_env(tls),
                                     capture_output=True, text=True, timeout=120)
                assert out.stdout.splitlines()[-1].split()[0] in said, (tls, out.stdout + out.stderr)
            assert sup.child("c").call("incr") == 4
            assert rt.failures == []
    finally:
        channel.inherit_tls(before)


@pytest.mark.slow
def test_the_watchdog_of_a_tls_system_stops_the_tree_when_its_owner_dies(pki, tmp_path, monkeypatch):
    """The watchdog is a process of its own (exec'd, not forked): it is given the TLS files to talk to the
    system it stops."""
    from tests.supervision import test_processes as processes

    for name, var in tls_module.ENV.items():
        monkeypatch.setenv(var, getattr(pki.member, name))
    log = tmp_path / "t.log"
    with processes.owner("tlsorphan", log) as (proc, sessions):
        assert processes.wait_until(lambda: len(processes._mine("tlsorphan", sessions)) == 8)
        watchdog = [c for c in processes._mine("tlsorphan", sessions).values() if "watchdog" in c]
        assert watchdog, processes._mine("tlsorphan", sessions)
        os.kill(proc.pid, 9)
        proc.wait(5)
        assert processes.wait_until(lambda: not processes._mine("tlsorphan", sessions), 20.0)
        assert log.read_text().splitlines() == ["c:shutdown", "b:shutdown", "a:shutdown"]


@pytest.mark.multihost
def test_a_node_with_a_certificate_of_the_cluster_ca_joins_a_tls_leader_one_of_another_ca_never_does(pki):
    """Namespace hosts: ``python -m supervision.node --tls-cert --tls-key --tls-ca``; the leader and the member
    run children across TLS; a node whose certificate another CA signed (same cookie) is never a member."""
    from supervision.node import NODE_CAPABILITY
    from tests.conftest import wait_until
    from tests.netns import Network
    from tests.supervision.test_node import NODE_PORT, start_node

    before = channel.current_tls()
    try:
        with Network(2) as net, ActorRuntime("tcp", "lead", bind_host=net.leader_ip, tls=pki.member,
                                             peers=[h.ip for h in net.hosts]) as rt:
            leader = f"{net.leader_ip}:{rt.admin_port}"
            start_node(net, 0, leader, *tls_module.to_args(pki.other))
            net.spawn(1, [sys.executable, "-m", "supervision.node", "--leader", leader, "--bind", net.hosts[1].ip,
                          "--port", str(NODE_PORT), *tls_module.to_args(pki.stranger)])
            member = f"{net.hosts[0].ip}:{NODE_PORT}"
            assert wait_until(lambda: member in rt.convention_members(), timeout=15)
            sup = rt.start_supervisor(SupervisorSpec("one_for_one"), [
                ChildSpec("far", Counter, requirements={NODE_CAPABILITY: member}, shutdown=2.0)])
            assert [sup.child("far").call("incr", timeout=10) for _ in range(3)] == [1, 2, 3]
            assert sup.child("far").call("netns") != os.readlink("/proc/self/ns/net")
            wait_until(lambda: False, timeout=3.0)  # the stranger's attempts
            assert rt.convention_members() == [member]
            assert rt.failures == []
    finally:
        channel.inherit_tls(before)
