"""Several hosts on one machine (network namespaces): placement by capability, restarts on a node,
and the trust model (unlisted peers cannot connect, so they cannot hand us a pickle)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys

import pytest

from supervision import ActorRuntime, ChildSpec, SpecError, SupervisionError, SupervisorSpec
from supervision.node import NODE_CAPABILITY, Node, parse_capabilities
from tests.conftest import wait_until
from tests.netns import Network
from tests.supervision.actors import Counter

pytestmark = pytest.mark.multihost
NODE_PORT = 19100


def start_node(net: Network, i: int, leader: str, *extra: str) -> subprocess.Popen:
    proc = net.spawn(i, [sys.executable, "-m", "supervision.node", "--leader", leader, "--bind", net.hosts[i].ip,
                         "--port", str(NODE_PORT), *extra])
    assert proc.stdout.readline().startswith("ready")
    return proc


def child_pid(sup, cid: str) -> int | None:
    child = sup.child(cid)
    try:
        return child.call("pid", 2.0) if child is not None else None
    except SupervisionError:
        return None


def test_children_run_on_the_node_their_requirements_name_and_restart_there():
    with Network(2) as net, ActorRuntime("tcp", "lead", bind_host=net.leader_ip,
                                         peers=[h.ip for h in net.hosts]) as rt:
        leader = f"{net.leader_ip}:{rt.admin_port}"
        for i in range(2):
            start_node(net, i, leader, "--cap", f"zone=z{i}")
        nodes = {f"{h.ip}:{NODE_PORT}" for h in net.hosts}
        assert wait_until(lambda: nodes <= set(rt.convention_members()), timeout=15)
        sup = rt.start_supervisor(SupervisorSpec("one_for_one", intensity=5), [
            ChildSpec("here", Counter),
            ChildSpec("z0", Counter, requirements={"zone": "z0"}, shutdown=2.0),
            ChildSpec("h1", Counter, requirements={NODE_CAPABILITY: f"{net.hosts[1].ip}:{NODE_PORT}"}, shutdown=2.0),
        ])
        spaces = {cid: sup.child(cid).call("netns") for cid in ("here", "z0", "h1")}
        assert spaces["here"] == os.readlink("/proc/self/ns/net")
        assert len(set(spaces.values())) == 3  # three hosts

        sup.child("z0").call("incr")
        old = sup.child("z0").call("pid")
        os.kill(old, signal.SIGKILL)
        assert wait_until(lambda: child_pid(sup, "z0") not in (None, old), timeout=10, interval=0.1)
        assert sup.child("z0").call("get") == 0  # a fresh process...
        assert sup.child("z0").call("netns") == spaces["z0"]  # ...on the same node


def test_an_unlisted_peer_cannot_connect_a_listed_one_is_trusted_with_code(tmp_path):
    marker = str(tmp_path / "loaded")
    with Network(2) as net, ActorRuntime("tcp", "lead", bind_host=net.leader_ip, peers=[net.hosts[0].ip]) as rt:
        leader = f"{net.leader_ip}:{rt.admin_port}"
        mine = os.readlink("/proc/self/ns/net").strip("net:[]")
        for i in range(2):  # both send a pickle that runs code when loaded (their capabilities)
            proc = net.spawn(i, [sys.executable, "-m", "tests.supervision.node_script", leader, net.hosts[i].ip,
                                 str(NODE_PORT), marker])
            assert proc.stdout.readline().startswith("ready")
        listed, unlisted = (f"{h.ip}:{NODE_PORT}" for h in net.hosts)
        assert wait_until(lambda: listed in rt.convention_members(), timeout=15)
        assert wait_until(lambda: glob.glob(f"{marker}.{mine}"), timeout=5)  # the listed peer's pickle ran here
        os.unlink(f"{marker}.{mine}")
        wait_until(lambda: False, timeout=3.0)  # give the unlisted peer time to retry its registration
        assert unlisted not in rt.convention_members()
        assert not glob.glob(f"{marker}.{mine}")  # nothing it sent was loaded on the leader


def test_a_killed_node_process_takes_its_actor_system_with_it():
    """kill -9 of ``python -m supervision.node``: its watchdog shuts the node's admin and actors down,
    so nothing of it is left in its namespace; the leader's supervisor sees its child exit."""
    with Network(1) as net, ActorRuntime("tcp", "lead", bind_host=net.leader_ip, peers=[net.hosts[0].ip]) as rt:
        leader = f"{net.leader_ip}:{rt.admin_port}"
        proc = net.spawn(0, [sys.executable, "-m", "supervision.node", "--leader", leader, "--bind", net.hosts[0].ip,
                             "--port", str(NODE_PORT)])
        assert proc.stdout.readline().startswith("ready")
        node = f"{net.hosts[0].ip}:{NODE_PORT}"
        assert wait_until(lambda: node in rt.convention_members(), timeout=15)
        sup = rt.start_supervisor(SupervisorSpec("one_for_one", intensity=0),
                                  [ChildSpec("w", Counter, requirements={NODE_CAPABILITY: node}, shutdown=1.0)])
        assert sup.child("w").call("netns") != os.readlink("/proc/self/ns/net")
        assert len(net.pids(0)) >= 3  # the node process, its admin, the child (and Thespian's logger)
        os.kill(proc.pid, signal.SIGKILL)
        assert wait_until(lambda: not net.pids(0), timeout=20, interval=0.2)
        assert wait_until(lambda: rt.failures, timeout=10)  # intensity 0: the child's exit stopped its supervisor


def test_node_and_runtime_arguments_are_checked():
    with pytest.raises(SpecError, match="ip:port"):
        Node("10.0.0.5", "10.0.0.6", 1900)
    with pytest.raises(SpecError, match="key=value"):
        parse_capabilities(["role"])
    with pytest.raises(SpecError, match="IP addresses"):
        ActorRuntime("tcp", peers="10.0.0.6")
    with pytest.raises(SpecError, match="only workers"):
        ChildSpec("s", SupervisorSpec(), requirements={"zone": "a"})


def test_without_the_cookie_nothing_is_unpickled_nothing_exits_and_membership_holds(tmp_path):
    """From a listed host's namespace (the IP filter lets it in): a process without the cookie sends code
    pickles, malformed frames, garbage, a fake register and a spoofed de-register of the live member to
    every port of the leader and of the member; a node started with another cookie tries to join. Nothing
    is unpickled anywhere, nothing exits, the convention is unchanged, and the next call succeeds."""
    from thespian.system.messages.convention import ConventionDeRegister

    from tests.supervision.attacker import address, frame, listening_ports
    from tests.supervision.test_auth import authenticated_exchange, runtime_ports

    marker = str(tmp_path / "loaded")
    with Network(2) as net, ActorRuntime("tcp", "lead", bind_host=net.leader_ip,
                                         peers=[h.ip for h in net.hosts]) as rt:
        leader = f"{net.leader_ip}:{rt.admin_port}"
        node = start_node(net, 0, leader)
        member = f"{net.hosts[0].ip}:{NODE_PORT}"
        assert wait_until(lambda: member in rt.convention_members(), timeout=15)
        sup = rt.start_supervisor(SupervisorSpec("one_for_one", intensity=0), [
            ChildSpec("far", Counter, requirements={NODE_CAPABILITY: member}, shutdown=2.0)])
        stranger = net.spawn(1, [sys.executable, "-m", "supervision.node", "--leader", leader, "--bind",
                                 net.hosts[1].ip, "--port", str(NODE_PORT)],
                             env={"DSPEX_COOKIE": "not the leader's cookie at all"})
        said = [stranger.stdout.readline() for _ in range(2)]  # ready, and why the leader will not have it
        assert any(line.startswith("ready") for line in said), said
        targets = sorted(runtime_ports(rt, sup) | listening_ports(net.pids(0)))
        assert {ip for ip, _ in targets} == {net.leader_ip, net.hosts[0].ip}
        attacker = net.spawn(1, [sys.executable, "-m", "tests.supervision.attacker", marker, member,
                                 *(f"{ip}:{port}" for ip, port in targets)])
        calls = 0
        while attacker.poll() is None:  # the leader's own process serves its endpoint while it calls
            calls += 1
            assert sup.child("far").call("incr", timeout=10) == calls
        lines = attacker.stdout.read().splitlines()
        assert len(lines) == len(targets), lines
        idle = {f"{ip}:{port}" for ip, port in listening_ports([node.pid])}  # reads nothing while it waits
        for line in lines:
            target, counts = line.split(" ", 1)
            assert counts == ("closed 0 silent 8 answered 0" if target in idle else "closed 8 silent 0 answered 0"), line
        assert not glob.glob(f"{marker}*")  # nothing was loaded, in any namespace
        # with the cookie, a de-register of the member sent by someone else is acknowledged and ignored
        me, them = address(f"{net.leader_ip}:1"), address(member)
        assert b"ACK" in authenticated_exchange(net.leader_ip, rt.admin_port, frame((me, ConventionDeRegister(them))))
        wait_until(lambda: False, timeout=1.0)
        assert rt.convention_members() == [member]  # no phantom, no eviction, no stranger
        assert sup.child("far").call("incr", timeout=10) == calls + 1
        assert rt.failures == []


def test_a_node_started_before_its_leader_joins_within_seconds_of_the_leader_coming_up():
    """Thespian retries a failed registration after 7 min 22 s; a node now tries again within seconds."""
    import time

    with Network(1) as net:
        leader_port = NODE_PORT + 1
        start_node(net, 0, f"{net.leader_ip}:{leader_port}")  # nobody there yet
        member = f"{net.hosts[0].ip}:{NODE_PORT}"
        wait_until(lambda: False, timeout=3.0)  # its first attempts fail
        with ActorRuntime("tcp", "lead", bind_host=net.leader_ip, admin_port=leader_port,
                          peers=[net.hosts[0].ip]) as rt:
            up = time.monotonic()
            assert wait_until(lambda: member in rt.convention_members(), timeout=30, interval=0.2)
            assert time.monotonic() - up < 20
            sup = rt.start_supervisor(SupervisorSpec("one_for_one"), [
                ChildSpec("far", Counter, requirements={NODE_CAPABILITY: member}, shutdown=2.0)])
            assert sup.child("far").call("netns") != os.readlink("/proc/self/ns/net")


def test_nodes_says_which_hosts_answer_now_and_dspex_nodes_prints_them():
    """``rt.nodes()`` asks every member's admin for its status: a stopped host (SIGSTOP, still registered
    for minutes in Thespian's list) is unreachable at once, and up again once it continues."""
    import json

    from supervision import NodeState

    with Network(2) as net, ActorRuntime("tcp", "lead", bind_host=net.leader_ip,
                                         peers=[h.ip for h in net.hosts]) as rt:
        leader = f"{net.leader_ip}:{rt.admin_port}"
        for i in range(2):
            start_node(net, i, leader, "--cap", f"zone=z{i}")
        members = [f"{h.ip}:{NODE_PORT}" for h in net.hosts]
        assert wait_until(lambda: set(members) <= set(rt.convention_members()), timeout=15)
        infos = rt.nodes()
        assert [(i.address, i.state, i.capabilities.get("zone")) for i in infos] == [
            (members[0], NodeState.UP, "z0"), (members[1], NodeState.UP, "z1")]
        stopped = net.pids(1)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            states = {i.address: i.state for i in rt.nodes(timeout=1.0)}
            assert states == {members[0]: NodeState.UP, members[1]: NodeState.UNREACHABLE}
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        assert wait_until(lambda: all(i.state is NodeState.UP for i in rt.nodes()), timeout=10)

        out = subprocess.run([sys.executable, "-m", "dspex", "nodes", "--leader", leader, "--json"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        listed = [json.loads(line) for line in out.stdout.splitlines()]
        assert [(n["address"], n["state"], n["capabilities"]["zone"]) for n in listed] == [
            (members[0], "up", "z0"), (members[1], "up", "z1")]
        table = subprocess.run([sys.executable, "-m", "dspex", "nodes", "--leader", leader],
                               capture_output=True, text=True, timeout=120)
        assert table.returncode == 0 and "2 host(s), 2 up" in table.stdout, table.stdout + table.stderr
        nobody = subprocess.run([sys.executable, "-m", "dspex", "nodes", "--leader", f"{net.leader_ip}:1"],
                                capture_output=True, text=True, timeout=60)
        assert nobody.returncode == 2 and "nothing answers there" in nobody.stderr
