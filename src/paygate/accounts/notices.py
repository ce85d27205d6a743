"""The account emails (reset link, password changed, account locked) and sending them late.

Services only queue messages (`Outbox`); the endpoint or page hands them to the mailer as a
background task, which Starlette runs after the response is sent, so after the request's
transaction committed. A slow or broken mail server never delays or fails the answer, and
an answer that sends mail takes as long as one that does not (no account enumeration by
timing). A reset link lives only in the queued message, never in a table, log or job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import BackgroundTasks, Request
from fastapi.responses import JSONResponse

from paygate.kit.errors import Problem, problem_response
from paygate.kit.mail import Email, Mailer
from paygate.settings import Settings


@dataclass
class Outbox:
    """Messages a service decided to send, waiting for the transaction to end."""

    messages: list[Email] = field(default_factory=list)

    def add(self, email: Email) -> None:
        self.messages.append(email)

    def send_after_response(self, background: BackgroundTasks, settings: Settings) -> None:
        """Send every queued message once the response is out (failures are only logged)."""
        mailer = Mailer(settings)
        for message in self.messages:
            background.add_task(mailer.send_quietly, message)
        self.messages = []

    def problem_response(
        self, problem: Problem, request: Request, settings: Settings
    ) -> JSONResponse:
        """Answer a refusal yet still send what was queued (a lockout notice, say).

        A raised Problem would drop the background tasks; this answer carries them.
        """
        response = problem_response(problem, request)
        background = BackgroundTasks()
        self.send_after_response(background, settings)
        response.background = background
        return response


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def reset_link_email(settings: Settings, address: str, link: str) -> Email:
    minutes = settings.password_reset_ttl_minutes
    return Email(
        to=(address,),
        subject="Reset your paygate password",
        text=(
            "Someone (we hope you) asked to reset the password of the paygate account "
            f"{address}.\n\n"
            f"To choose a new password, open this link within {minutes} minutes:\n\n"
            f"{link}\n\n"
            "The link works once. Resetting signs you out everywhere and lifts a sign-in "
            "lockout.\n\n"
            "If you did not ask for this, ignore this message: your password stays as it is.\n"
        ),
    )


def password_changed_email(
    settings: Settings, address: str, *, how: str, when: datetime, ip: str | None
) -> Email:
    return Email(
        to=(address,),
        subject="Your paygate password was changed",
        text=(
            f"The password of the paygate account {address} was {how} at {_when(when)}"
            f"{f' from the address {ip}' if ip else ''}.\n\n"
            "Sessions signed in with the old password have been ended.\n\n"
            "If this was not you, reset your password now at "
            f"{settings.base_url}/forgot-password and tell an owner of your company.\n"
        ),
    )


@dataclass(frozen=True)
class LockedAccount:
    email: str
    locked_until: datetime
    ip: str | None


def account_locked_email(settings: Settings, locked: LockedAccount, threshold: int) -> Email:
    return Email(
        to=(locked.email,),
        subject="Your paygate account is locked",
        text=(
            f"After {threshold} failed sign-ins in a row, the paygate account {locked.email} "
            f"is locked until {_when(locked.locked_until)}.\n"
            f"The last failed attempt came from the address {locked.ip or 'unknown'}.\n\n"
            "If that was you, wait until then, or ask an owner of your company to unlock the "
            f"account from the Members page ({settings.base_url}/members).\n"
            "If it was not you, someone may be guessing your password: reset it at "
            f"{settings.base_url}/forgot-password (a reset also lifts the lock).\n"
        ),
    )


def member_locked_email(
    settings: Settings, owner: str, companies: list[str], locked: LockedAccount, threshold: int
) -> Email:
    names = ", ".join(companies)
    return Email(
        to=(owner,),
        subject=f"A member's paygate account is locked: {locked.email}",
        text=(
            f"{locked.email}, a member of {names}, is locked out of paygate after "
            f"{threshold} failed sign-ins in a row.\n"
            f"The lock ends by itself at {_when(locked.locked_until)}.\n"
            f"The last failed attempt came from the address {locked.ip or 'unknown'}.\n\n"
            "As an owner you can unlock the account now from the Members page: "
            f"{settings.base_url}/members\n"
            "Unlock it only once you know the attempts were theirs.\n"
        ),
    )
