"""A local SMTP server (aiosmtpd) on a free loopback port that keeps what it receives."""

from __future__ import annotations

from contextlib import contextmanager

from tests.conftest import free_port


class Inbox:
    """aiosmtpd handler: every received envelope, in order."""

    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@contextmanager
def smtp_server():
    """Yields ``(inbox, port)`` while a local SMTP server runs."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()  # aiosmtpd probes its own port at start: 0 will not do
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield inbox, port
    finally:
        ctl.stop()
