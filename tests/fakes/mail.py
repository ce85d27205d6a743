"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, for mail tests."""

from __future__ import annotations

import email
import email.policy
import re
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.fakes.servers import HOST, free_port


@dataclass
class Mailbox:
    """What the SMTP server received, newest last."""

    host: str = HOST
    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    def clear(self) -> None:
        self.messages.clear()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    def wait_for(self, address: str, *, count: int = 1, timeout: float = 5.0) -> list[EmailMessage]:
        """The messages to `address` once at least `count` have arrived (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no mail to {address} within {timeout}s: {len(self.to(address))}")


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(message: EmailMessage) -> str:
    match = re.search(r"https?://\S+", body_of(message))
    assert match is not None, "the mail holds no link"
    return match.group(0)


class MailServer:
    def __init__(self) -> None:
        self.mailbox = Mailbox()
        self._controller = Controller(self.mailbox, hostname=HOST, port=free_port())

    def start(self) -> Mailbox:
        self._controller.start()
        self.mailbox.port = self._controller.port
        return self.mailbox

    def stop(self) -> None:
        self._controller.stop()
