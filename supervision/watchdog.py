"""Owner watchdog: ``python -m supervision.watchdog --port P``, started by ActorRuntime.

Its stdin is a pipe from the owning process (private to the owner): first line, the cluster key in hex
(the watchdog talks to the system through authenticated connections like any member); second, the
root supervisor's address (hex of a pickle) or ``-`` for a system without a tree (a convention member,
:class:`supervision.node.Node`); then ``bye`` when the owner closes the runtime itself. A system that uses
TLS names its files in ``--tls-cert --tls-key --tls-ca`` (paths, not secrets).
End-of-file without ``bye`` means the owner died (kill -9): the watchdog joins the actor system as
an outside client, asks the root to stop the tree in order, and shuts the system down, so no
actor process outlives its owner.
"""

from __future__ import annotations

import argparse
import pickle
import signal
import sys
from typing import Any

from .gen_server import set_process_title
from .tls import TlsConfig, add_tls_arguments, tls_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supervision.watchdog")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="app")
    parser.add_argument("--timeout", type=float, default=60.0)
    add_tls_arguments(parser)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    set_process_title(f"supervision: watchdog {args.name}")
    key = bytes.fromhex(sys.stdin.buffer.readline().strip().decode() or "")
    first = sys.stdin.buffer.readline().strip()
    rest = sys.stdin.buffer.read()
    if rest.strip() == b"bye" or not first:
        return 0
    root = None if first == b"-" else pickle.loads(bytes.fromhex(first.decode()))
    shut_down(args.port, root, args.name, args.timeout, key, tls_from_args(args))
    return 0


def shut_down(port: int, root: Any | None, name: str, timeout: float, key: bytes,
              tls: TlsConfig | None = None) -> None:
    """Stop the tree under ``root`` (if any) in order, then the whole actor system on ``port``."""
    from thespian.actors import ActorSystem

    from . import _thespian, channel
    from .messages import Call, StopTree

    _thespian.install()
    channel.inherit_key(key)
    channel.inherit_tls(tls)
    system = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": port}, transientUnique=True,
                         logDefs={"version": 1, "disable_existing_loggers": False})
    try:
        if root is not None:
            answer = system.ask(root, Call(0, StopTree("owner_died")), timeout)
            print(f"supervision watchdog {name}: owner gone; tree stopped ({type(answer).__name__})", file=sys.stderr)
    finally:
        system.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
