"""The TCP base's admin port: one start_system picked that something else took before the admin bound it is
replaced by another (an outgoing connection's ephemeral port can take it between the two)."""

from __future__ import annotations

import socket

from supervision import ActorRuntime, tcp


def test_a_picked_admin_port_taken_in_the_meantime_is_replaced(monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1]])
    real = tcp.free_port
    monkeypatch.setattr(tcp, "free_port", lambda host="127.0.0.1": next(picks, None) or real(host))
    try:
        with ActorRuntime(base="tcp", name="port") as rt:
            assert rt.admin_port != taken.getsockname()[1]
    finally:
        taken.close()
