"""A bare Thespian actor: the baseline a GenServer call is compared with."""

from thespian.actors import Actor


class RawEcho(Actor):
    def receiveMessage(self, msg, sender):  # noqa: N802
        if isinstance(msg, int):
            self.send(sender, msg + 1)
