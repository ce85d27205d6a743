"""Password hashing (argon2id) and the strength rules for new passwords."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

MIN_LENGTH = 12
MAX_LENGTH = 128
MIN_SCORE = 3  # zxcvbn: 3 = "safely unguessable", resists offline slow-hash attacks

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
# Verified against when the email is unknown, so sign-in takes the same time either way.
_DUMMY_HASH = _hasher.hash("paygate-timing-equalizer-not-a-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problems(password: str, *, context: tuple[str, ...] = ()) -> list[str]:
    """Why a new password is refused, in plain words (empty when it is fine).

    No composition rules (NIST SP 800-63B): length, and not guessable from common lists
    or from the user's own email and company name.
    """
    if len(password) < MIN_LENGTH:
        return [f"Use at least {MIN_LENGTH} characters."]
    if len(password) > MAX_LENGTH:
        return [f"Use at most {MAX_LENGTH} characters."]
    words = [part for item in context for part in re.split(r"[^a-z0-9]+", item.lower()) if part]
    remainder = re.sub(r"[^a-z0-9]+", "", password.lower())
    for word in sorted(words, key=len, reverse=True):
        if len(word) >= 3:
            remainder = remainder.replace(word, "")
    if remainder != re.sub(r"[^a-z0-9]+", "", password.lower()) and len(remainder) < 8:
        return ["This password is built from your email or company name."]
    result = zxcvbn(password[:MAX_LENGTH], user_inputs=[*context, *words])
    if result["score"] >= MIN_SCORE:
        return []
    feedback = result["feedback"]
    reasons = [feedback["warning"]] if feedback.get("warning") else []
    reasons.append("This password is too easy to guess.")
    reasons.extend(feedback.get("suggestions", []))
    return reasons
