"""Outbound email: one way to send it, over SMTP when configured, into an outbox folder otherwise.

Mail goes straight from the caller (after its transaction commits), never through a table
or a job argument: a password-reset link is a credential and must not rest in the database.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import structlog

from paygate.kit.clock import utcnow
from paygate.settings import Settings

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Email:
    to: tuple[str, ...]
    subject: str
    text: str


class MailError(Exception):
    """The message could not be handed to the mail server."""


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _message(self, email: Email) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._settings.mail_from
        message["To"] = ", ".join(email.to)
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="paygate")
        message.set_content(email.text)
        return message

    async def send(self, email: Email) -> None:
        """Hand `email` to the SMTP server (or the outbox); MailError when that fails."""
        if not email.to:
            return
        message = self._message(email)
        if self._settings.smtp_host is None:
            path = await asyncio.to_thread(self._write_to_outbox, message)
            # The body may hold a one-time link: log where it is, not what it says.
            logger.info("mail_written_to_outbox", subject=email.subject, path=str(path))
            return
        try:
            await asyncio.to_thread(self._send_smtp, message)
        except (OSError, smtplib.SMTPException) as exc:
            logger.warning("mail_not_sent", subject=email.subject, error=type(exc).__name__)
            raise MailError(f"The mail server refused the message ({type(exc).__name__}).") from exc
        logger.info("mail_sent", subject=email.subject, recipients=len(email.to))

    async def send_quietly(self, email: Email) -> bool:
        """Send, logging a failure instead of raising: for notices that must not undo an action."""
        try:
            await self.send(email)
        except MailError:
            return False
        return True

    def _send_smtp(self, message: EmailMessage) -> None:
        settings = self._settings
        assert settings.smtp_host is not None
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username and settings.smtp_password is not None:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            smtp.send_message(message)

    def _write_to_outbox(self, message: EmailMessage) -> Path:
        outbox = self._settings.data_dir / "outbox"
        outbox.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        path = outbox / f"{stamp}.eml"
        path.write_bytes(bytes(message))
        path.chmod(0o600)
        return path
