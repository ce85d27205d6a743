"""Envelope encryption of gateway secrets (AES-256-GCM).

Each gateway configuration has its own random data key; its secrets are encrypted under
that data key, and the data key is wrapped by a master key named by a key id. Both layers
bind the company and the configuration as associated data, so a ciphertext copied onto
another row or company fails to decrypt. Rotating the master key re-wraps data keys only.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class KeyringError(Exception):
    """The master keys are missing, malformed, or cannot open a ciphertext."""


@dataclass(frozen=True)
class SealedSecrets:
    key_id: str
    wrapped_data_key: bytes
    ciphertext: bytes


def generate_master_key(key_id: str) -> str:
    """A new `keyid:base64key` entry for PAYGATE_MASTER_KEYS."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


# A nonce and a GCM tag at least: anything shorter was cut (a bad restore, a hand edit).
_SHORTEST_SEALED = NONCE_BYTES + 16


def _open(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    if len(sealed) < _SHORTEST_SEALED:
        # cryptography raises ValueError on a short nonce: make it the same failure as a
        # wrong key or a tampered byte, so callers report it instead of crashing.
        raise InvalidTag()
    return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)


class SealedRow(Protocol):
    """A row that keeps secrets sealed by `Keyring.seal` (a gateway, a webhook endpoint)."""

    key_id: str
    wrapped_data_key: bytes
    secret_ciphertext: bytes

    def aad(self) -> str: ...


class Keyring:
    """The master keys this process knows; the first is the primary for new data keys."""

    def __init__(self, keys: dict[str, bytes], primary_key_id: str) -> None:
        if primary_key_id not in keys:
            raise KeyringError("the primary key id is not among the keys")
        self._keys = keys
        self.primary_key_id = primary_key_id

    @classmethod
    def parse(cls, text: str) -> Keyring:
        """Read `keyid:base64key` entries separated by commas or new lines."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for raw in text.replace(",", "\n").splitlines():
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            key_id, sep, encoded = entry.partition(":")
            if not sep or not key_id:
                raise KeyringError("each master key entry must read keyid:base64key")
            try:
                key = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"master key {key_id!r} is not valid base64") from None
            if len(key) != KEY_BYTES:
                raise KeyringError(f"master key {key_id!r} must be {KEY_BYTES} bytes")
            if key_id in keys:
                raise KeyringError(f"master key id {key_id!r} appears twice")
            keys[key_id] = key
            order.append(key_id)
        if not order:
            raise KeyringError("no master key is configured")
        return cls(keys, order[0])

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def _master(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyringError(f"master key {key_id!r} is not configured") from None

    def seal(self, secrets_by_field: dict[str, str], aad: str) -> SealedSecrets:
        data_key = AESGCM.generate_key(bit_length=256)
        associated = aad.encode()
        plaintext = json.dumps(secrets_by_field, sort_keys=True).encode()
        return SealedSecrets(
            key_id=self.primary_key_id,
            wrapped_data_key=_seal(self._master(self.primary_key_id), data_key, associated),
            ciphertext=_seal(data_key, plaintext, associated),
        )

    def open(self, sealed: SealedSecrets, aad: str) -> dict[str, str]:
        associated = aad.encode()
        try:
            data_key = _open(self._master(sealed.key_id), sealed.wrapped_data_key, associated)
            values = json.loads(_open(data_key, sealed.ciphertext, associated))
        except InvalidTag:
            raise KeyringError("the stored secrets could not be decrypted") from None
        if not isinstance(values, dict):
            raise KeyringError("the stored secrets are not a mapping")
        return {str(k): str(v) for k, v in values.items()}

    def readable(self, sealed: SealedSecrets, aad: str) -> bool:
        """Whether these secrets open with the configured keys (nothing is returned)."""
        try:
            self.open(sealed, aad)
        except KeyringError:
            return False
        return True

    def rewrap(self, sealed: SealedSecrets, aad: str) -> SealedSecrets:
        """The same ciphertext with its data key wrapped by the primary master key.

        The ciphertext is opened too (and discarded): a rotation that succeeds has proved
        every configuration it touched is still readable, not just its wrapped key.
        """
        associated = aad.encode()
        try:
            data_key = _open(self._master(sealed.key_id), sealed.wrapped_data_key, associated)
        except InvalidTag:
            raise KeyringError("a data key could not be unwrapped") from None
        try:
            _open(data_key, sealed.ciphertext, associated)
        except InvalidTag:
            raise KeyringError("the stored secrets could not be decrypted") from None
        return SealedSecrets(
            key_id=self.primary_key_id,
            wrapped_data_key=_seal(self._master(self.primary_key_id), data_key, associated),
            ciphertext=sealed.ciphertext,
        )

    def rewrap_row(self, row: SealedRow) -> None:
        """`rewrap` a row's secrets in place: its data key, now under the primary master key
        (raises KeyringError, leaving the row as it was, when they cannot be opened)."""
        sealed = self.rewrap(
            SealedSecrets(row.key_id, row.wrapped_data_key, row.secret_ciphertext), row.aad()
        )
        row.key_id = sealed.key_id
        row.wrapped_data_key = sealed.wrapped_data_key
