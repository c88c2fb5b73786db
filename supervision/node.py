"""A host's actor system, joined to a leader's convention, that runs the actors the leader places there.

On each worker host::

    python -m supervision.node --leader 10.0.0.5:1900 --bind 10.0.0.6 --port 1900 \\
        --peer 10.0.0.5 --cap role=worker

The leader is an ``ActorRuntime("tcp", bind_host="10.0.0.5", admin_port=1900, peers=["10.0.0.6"])``;
a ``ChildSpec(..., requirements={"role": "worker"})`` under any of its supervisors starts on a node
whose capabilities match (Thespian's convention placement), supervised from the leader like any child.
Every node also has the capability ``supervision.node = "<bind>:<port>"``, to place a child on one node.

Trust: a node accepts connections only from ``peers`` (and itself), and only from processes that prove
they hold the cluster cookie (the leader's: copy its ``~/.dspex/cookie`` here, or set ``DSPEX_COOKIE``;
see :mod:`supervision.cookie`). Messages are pickles, and loading a pickle runs code, so a cookie holder
is trusted with code execution on the node, as the node is on the leader.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any, Sequence

from . import tcp
from .cookie import Cookie
from .cookie import resolve as resolve_cookie
from .errors import SpecError
from .tcp import NODE_ENV
from .tls import TlsConfig, add_tls_arguments, tls_from_args
from .tls import resolve as resolve_tls

NODE_CAPABILITY = "supervision.node"


class Node:
    """A convention member: start with ``with Node(...)``; ``close()`` stops its actors and system."""

    def __init__(self, leader: str, bind_host: str, admin_port: int, *, capabilities: dict | None = None,
                 peers: Sequence[str] = (), log_dir: str | None = None, name: str = "node",
                 cookie: Cookie | str | None = None, cookie_file: str | os.PathLike | None = None,
                 actor_ports: tuple[int, int] | str | None = None, tls: TlsConfig | None = None) -> None:
        tcp.check_address(f"{bind_host}:{admin_port}", "Node.bind_host/admin_port")
        leader_host, _ = tcp.check_address(leader, "Node.leader")
        self.leader, self.bind_host, self.admin_port = leader, bind_host, admin_port
        self.address = f"{bind_host}:{admin_port}"
        self.capabilities = {**(capabilities or {}), NODE_CAPABILITY: self.address}
        self.peers = tuple(dict.fromkeys([leader_host, *peers]))
        self.log_dir, self.name = log_dir, name
        self._cookie = (cookie, cookie_file)
        self.tls = tls  # else the environment's (supervision.tls)
        self.actor_ports = None if actor_ports is None else tcp.check_port_range(actor_ports, "Node.actor_ports")
        self._system: Any = None
        self._watchdog: Any = None
        self._saved_env: str | None = None
        self._log_place: Any = None

    def start(self) -> "Node":
        if self._system is not None:
            return self
        key = resolve_cookie(*self._cookie).key
        self._saved_env = os.environ.get(NODE_ENV)
        os.environ[NODE_ENV] = self.address
        self._log_place = tcp.place_thespian_log(self.log_dir)
        self._system, _ = tcp.start_system(self.bind_host, self.admin_port, self.capabilities, key=key,
                                           convention=self.leader, peers=self.peers, actor_ports=self.actor_ports,
                                           tls=resolve_tls(self.tls))
        self._watchdog = tcp.start_watchdog(self.admin_port, self.name, 10.0)
        return self

    def close(self) -> None:
        """Stop every actor on this node (the leader's supervisors see them exit) and the system."""
        system, self._system = self._system, None
        if system is None:
            return
        try:
            system.shutdown()
        finally:
            tcp.stop_watchdog(self._watchdog)
            tcp.release_thespian_log(self._log_place)
            tcp.release_key()
            if self._saved_env is None:
                os.environ.pop(NODE_ENV, None)
            else:
                os.environ[NODE_ENV] = self._saved_env

    def __enter__(self) -> "Node":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def parse_capabilities(items: Sequence[str]) -> dict:
    """``["role=worker", "gpu=0"]`` → ``{"role": "worker", "gpu": "0"}`` (values stay strings)."""
    caps = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError("--cap", f"{item!r} is not key=value", "write capabilities as --cap role=worker")
        caps[key] = value
    return caps


def serve(node: Node, ready: str = "ready") -> None:
    """Run ``node`` until stdin closes or SIGTERM/SIGINT arrives; print ``ready <address>`` once up."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def watch_stdin() -> None:  # raw reads: a daemon thread must not hold the buffered reader's lock
        while os.read(sys.stdin.fileno(), 4096):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    with node:
        print(f"{ready} {node.address}", flush=True)
        stop.wait()


def add_node_arguments(parser: argparse.ArgumentParser, default_port: int | None = None) -> None:
    """The command-line options of a node: --leader, --bind, --port, --peer, --cap, --actor-ports,
    --cookie-file, --tls-cert / --tls-key / --tls-ca (see :func:`node_from_args`)."""
    parser.add_argument("--leader", required=True, help="the leader's admin address, ip:port")
    parser.add_argument("--bind", required=True, help="this host's address on the network the leader sees")
    if default_port is None:
        parser.add_argument("--port", type=int, required=True, help="this node's admin port")
    else:
        parser.add_argument("--port", type=int, default=default_port, help=f"this node's admin port ({default_port})")
    parser.add_argument("--peer", action="append", default=[], help="another IP allowed to connect (repeat)")
    parser.add_argument("--cap", action="append", default=[], help="a capability key=value (repeat)")
    parser.add_argument("--actor-ports", default=None,
                        help="the range actors listen on, first-last (default: any free port)")
    parser.add_argument("--cookie-file", default=None,
                        help="the cluster cookie's file (default: $DSPEX_COOKIE, else ~/.dspex/cookie)")
    add_tls_arguments(parser)


def node_from_args(args: argparse.Namespace, capabilities: dict | None = None, name: str = "node") -> Node:
    """The :class:`Node` the options of :func:`add_node_arguments` describe, with ``capabilities`` added."""
    return Node(args.leader, args.bind, args.port, capabilities={**(capabilities or {}), **parse_capabilities(args.cap)},
                peers=args.peer, name=name, cookie_file=args.cookie_file, actor_ports=args.actor_ports,
                tls=tls_from_args(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supervision.node", description=__doc__.split("\n\n")[0])
    add_node_arguments(parser)
    serve(node_from_args(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
