"""Outbound mail reaches a real SMTP server, and goes to the outbox folder when none is set."""

from __future__ import annotations

import pytest

from paygate.kit.mail import Email, Mailer, MailError
from paygate.settings import Settings
from tests.fakes.mail import Mailbox, body_of
from tests.fakes.servers import free_port


async def test_mail_reaches_the_smtp_server(settings: Settings, mailbox: Mailbox) -> None:
    await Mailer(settings).send(Email(("owner@a.example",), "Hello", "See https://x.example/1"))

    [message] = mailbox.wait_for("owner@a.example")
    assert message["Subject"] == "Hello"
    assert message["From"] == settings.mail_from
    assert "https://x.example/1" in body_of(message)


async def test_without_smtp_mail_goes_to_the_outbox(settings: Settings) -> None:
    local = settings.model_copy(update={"smtp_host": None})

    await Mailer(local).send(Email(("a@b.example",), "Reset", "one-time link"))

    [written] = sorted((local.data_dir / "outbox").glob("*.eml"))
    assert b"one-time link" in written.read_bytes()
    assert written.stat().st_mode & 0o077 == 0


async def test_an_unreachable_server_is_a_mail_error(settings: Settings) -> None:
    down = settings.model_copy(update={"smtp_port": free_port(), "smtp_timeout_seconds": 2.0})

    with pytest.raises(MailError, match="refused"):
        await Mailer(down).send(Email(("a@b.example",), "Hi", "text"))
    assert await Mailer(down).send_quietly(Email(("a@b.example",), "Hi", "text")) is False
