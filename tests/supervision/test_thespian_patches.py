"""What ``supervision/_thespian.py`` relies on in Thespian, one test a behaviour: an upgrade of Thespian that
changes one fails here, by name, rather than as a silent hole in the authentication."""

from __future__ import annotations

import inspect
import selectors
import socket

import pytest

from thespian.system import actorManager, multiprocCommon, timing
from thespian.system.admin import adminCore, convention
from thespian.system.transport import TCPTransport, streamBuffer

from supervision import _thespian, channel


def test_install_puts_every_patch_in_place():
    _thespian.install()
    T = TCPTransport.TCPTransport
    assert T._acceptNewIncoming is _thespian._accept_new_incoming
    assert T.new_socket is _thespian._new_socket
    assert T._handleReadableIncoming is _thespian._handle_readable_incoming
    assert T.__dict__["_waitForSendable"].__func__ is _thespian._wait_for_sendable
    assert TCPTransport.serializer is _thespian._Frames
    assert TCPTransport.socket.socket is _thespian._RangeBoundSocket
    assert TCPTransport.selectors.DefaultSelector is _thespian.LeanPollSelector
    assert convention.ConventioneerAdmin.h_ConventionRegister is _thespian._h_convention_register
    assert convention.LocalConventionState.convention_inattention_delay is _thespian._inattention_delay
    assert actorManager.ActorManager.run is _thespian._actor_run
    assert convention.ConventioneerAdmin.run is _thespian._admin_run
    assert timing.ExpirationTimerView.remaining is _thespian._remaining


def test_received_frames_are_loaded_by_the_module_serializer_looked_up_when_a_connection_is_read():
    """TCPIncoming makes its ReceiveBuffer with ``serializer.loads`` at that moment: so replacing the module's
    ``serializer`` reaches every connection (the frame check runs before a frame is handed on)."""
    _thespian.install()
    a, b = socket.socketpair()
    try:
        incoming = TCPTransport.TCPIncoming(TCPTransport.ActorAddress(None), a)
        assert incoming._rData._deserialize == _thespian._Frames.loads
    finally:
        a.close()
        b.close()


def test_outgoing_connections_are_made_through_new_socket_with_the_socket_class():
    """XMIT_1 and interrupt_wait open sockets as ``self.new_socket(socket.socket, ...)``: that is where the
    client side of the authenticated channel is made."""
    source = inspect.getsource(TCPTransport.TCPTransport._next_XMIT_1)
    assert "self.new_socket(" in source and "socket.socket," in source
    assert "self.new_socket(" in inspect.getsource(TCPTransport.TCPTransport.interrupt_wait)


def test_the_transport_selects_write_or_read_for_a_send_by_wait_for_sendable():
    source = inspect.getsource(TCPTransport.TCPTransport._runWithExpiry)
    assert "partition(TCPTransport._waitForSendable" in source


def test_sends_re_offer_what_was_not_taken_and_acks_are_plain_frames():
    """XMIT_2 sends ``serMsg[amtSent:]`` and adds what ``send`` returned (so a SecureSocket may take 0 bytes
    while its handshake waits); acknowledgements are frames of the strings ``ACK`` / ``ACK+DATAERR``."""
    assert "intent.serMsg[intent.amtSent:]" in inspect.getsource(TCPTransport.TCPTransport._next_XMIT_2)
    assert streamBuffer.isControlMessage("ACK") and streamBuffer.isControlMessage("ACK+DATAERR")


def test_the_admin_dispatches_convention_messages_by_class_name_at_call_time():
    assert "'h_' + envelope.message.__class__.__name__" in inspect.getsource(adminCore)


def test_a_failed_registration_calls_the_error_callback_bound_on_the_state():
    source = inspect.getsource(convention.LocalConventionState.setup_convention)
    assert "onError = self._setupConventionCBError" in source
    assert "self._conventionRegistration = ExpirationTimer(" in source
    run = inspect.getsource(_thespian._original_admin_run)  # (the loop patch 11 enters)
    assert "convention_inattention_delay(ct)" in run
    # after the checks, an expired registration timer is set to the whole re-registration period: so the
    # member checks must themselves try again after the miss that makes Thespian forget the leader
    check = inspect.getsource(convention.LocalConventionState.check_convention)
    assert "self._conventionRegistration = ExpirationTimer(CONVENTION_REREGISTRATION_PERIOD)" in check
    assert "CONVENTION_REGISTRATION_MISS_MAX" in inspect.getsource(_thespian._original_member_checks)


def test_a_secure_socket_is_a_socket():
    """Thespian tests ``isinstance(x, socket.socket)`` (IPBase.isSameSystem): the channel must pass."""
    assert issubclass(channel.SecureSocket, socket.socket)


def test_messages_are_described_by_identify_and_never_rendered():
    """Thespian's debug logging (off) describes envelopes and sends with ``identify()``, evaluated as the
    argument: the patched descriptions name the type, never calling the message's ``str``."""
    from thespian.system import actorManager, systemCommon
    from thespian.system.transport import ReceiveEnvelope, TransmitIntent

    _thespian.install()
    assert "envelope.identify()" in inspect.getsource(actorManager.ActorManager._handleOneMessage)
    assert "intent.identify()" in inspect.getsource(systemCommon.systemCommonBase._send_intent_to_transport)

    class Loud:
        def __str__(self) -> str:
            raise AssertionError("the message was rendered to text")

        __repr__ = __str__

    assert ReceiveEnvelope("from", Loud()).identify() == "ReceiveEnvelope(from: from, msg: Loud)"
    assert "Loud" in TransmitIntent("to", Loud()).identify()


def test_the_transport_loop_makes_its_selector_from_the_module_each_turn():
    """``_runWithExpiry`` calls ``selectors.DefaultSelector()`` through the module's global each turn: the
    patched module's poll selector is what it uses."""
    source = inspect.getsource(TCPTransport.TCPTransport._runWithExpiry)
    assert "sel = selectors.DefaultSelector()" in source


def test_the_lean_selector_reports_what_the_poll_selector_reports():
    a, b = socket.socketpair()
    try:
        for make in (selectors.PollSelector, _thespian.LeanPollSelector):
            sel = make()
            sel.register(a.fileno(), selectors.EVENT_READ)
            assert sel.select(0) == []  # nothing to read yet
            sel.close()
        b.send(b"x")
        seen = {}
        for make in (selectors.PollSelector, _thespian.LeanPollSelector):
            sel = make()
            sel.register(a.fileno(), selectors.EVENT_READ)
            sel.register(b.fileno(), selectors.EVENT_WRITE)
            seen[make] = sorted((key.fd, events) for key, events in sel.select(0.01))
            sel.close()
        assert seen[_thespian.LeanPollSelector] == seen[selectors.PollSelector] == sorted(
            [(a.fileno(), selectors.EVENT_READ), (b.fileno(), selectors.EVENT_WRITE)])
        sel = _thespian.LeanPollSelector()
        with pytest.raises(ValueError):
            sel.register(-1, selectors.EVENT_READ)
        sel.register(a, selectors.EVENT_WRITE)  # a socket object, and a second registration adds its events
        sel.register(a.fileno(), selectors.EVENT_READ)
        assert [(key.fd, events) for key, events in sel.select(0)] == [  # ("x" is still unread)
            (a.fileno(), selectors.EVENT_READ | selectors.EVENT_WRITE)]
        b.close()  # the peer gone: readable (end of file), as the poll selector says
        assert [(key.fd, events & selectors.EVENT_READ) for key, events in sel.select(0.01)] == [
            (a.fileno(), selectors.EVENT_READ)]
    finally:
        a.close()
        b.close()


def test_a_forked_actor_and_the_admin_run_their_loops_through_the_patched_run_methods():
    """Patch 11 wraps the methods a forked child and the admin call to run their loops: a child calls
    ``am.run()`` on an ActorManager, the multiproc admin is a ConventioneerAdmin whose ``run`` is its loop."""
    assert "am.run()" in inspect.getsource(multiprocCommon.startChild)
    assert issubclass(multiprocCommon.MultiProcManager, actorManager.ActorManager)
    assert "run" not in vars(multiprocCommon.MultiProcManager)
    assert issubclass(multiprocCommon.MultiProcAdmin, convention.ConventioneerAdmin)
    assert all("run" not in vars(c) for c in multiprocCommon.MultiProcAdmin.__mro__
               if c is not convention.ConventioneerAdmin and issubclass(c, convention.ConventioneerAdmin))


def test_the_loop_is_entered_from_a_frame_larger_than_32_kib_that_returns_and_raises_what_it_calls():
    enter = _thespian._on_fresh_chunk()
    assert enter.__code__.co_nlocals * 8 > 32 * 1024  # a 64 KiB chunk of its own, half of it free behind it
    assert enter(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(KeyError):
        enter(lambda: {}["missing"])
    assert _thespian._on_fresh_chunk() is enter  # compiled once


def test_an_outside_send_is_scheduled_by_tx_to_actor_and_carried_out_by_run_transport():
    """``send_from_outside`` uses the outside endpoint's ``_tx_to_actor`` (a transmit track with ``.failed``)
    and ``_run_transport(duration, txonly=True)``, the two halves of ``ExternalOpsToActors.tell``."""
    from thespian.system import systemBase

    tell = inspect.getsource(systemBase.ExternalOpsToActors.tell)
    assert "self._tx_to_actor(anActor, msg)" in tell and "txonly=True" in tell
    assert "failed" in inspect.getsource(systemBase.TransmitTrack)
    assert "transmit_failed" in inspect.getsource(systemBase.ExternalOpsToActors._tx_to_actor)


def test_the_transport_loop_drops_false_delays_before_taking_the_shortest():
    """``_runWithExpiry`` waits ``min(filter(None, delays))``, or with no timeout when none is left: a delay that
    reads as ``timedelta(0)`` is dropped, not waited for (why patch 12 keeps a time not yet up above zero)."""
    source = inspect.getsource(TCPTransport.TCPTransport._runWithExpiry)
    assert "filter(None," in source and "self.run_time.view(ct).remaining()" in source
    assert "delay = max(0, timePeriodSeconds(min(delays))) if delays else None" in source


def test_a_timer_not_yet_up_has_time_left_and_one_that_is_up_has_none():
    _thespian.install()
    now = timing.currentTime()
    for left in (1e-9, 3e-7, 5e-7):  # timedelta(seconds=...) would round each of these to 0
        remaining = timing.ExpirationTimerView(left, now + left, now).remaining()
        assert remaining and remaining.total_seconds() > 0
    assert timing.ExpirationTimerView(0.25, now + 0.25, now).remaining().total_seconds() == 0.25
    assert not timing.ExpirationTimerView(1, now, now).remaining()  # up at this instant
    assert not timing.ExpirationTimerView(1, now - 2, now).remaining()
    assert timing.ExpirationTimerView(None, None, now).remaining("forever") == "forever"
    assert timing.ExpirationTimer(0.001).view(now).remaining().total_seconds() > 0
