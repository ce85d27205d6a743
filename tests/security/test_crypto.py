"""Envelope encryption: sealed secrets open only with their key and their own binding."""

from __future__ import annotations

import pytest

from paygate.security.crypto import Keyring, KeyringError, SealedSecrets, generate_master_key


def test_seal_and_open_round_trip() -> None:
    keyring = Keyring.parse(generate_master_key("a"))
    sealed = keyring.seal({"secret_key": "sk_test_canary"}, "paygate/gateway/cmp_1/gw_1")
    assert sealed.key_id == "a"
    assert b"sk_test_canary" not in sealed.ciphertext + sealed.wrapped_data_key
    assert keyring.open(sealed, "paygate/gateway/cmp_1/gw_1") == {"secret_key": "sk_test_canary"}


def test_a_ciphertext_moved_to_another_company_or_row_does_not_open() -> None:
    keyring = Keyring.parse(generate_master_key("a"))
    sealed = keyring.seal({"k": "v"}, "paygate/gateway/cmp_1/gw_1")
    for other in ["paygate/gateway/cmp_2/gw_1", "paygate/gateway/cmp_1/gw_2"]:
        with pytest.raises(KeyringError):
            keyring.open(sealed, other)
    # One bit flipped (setting the last byte to 0 changed nothing once in 256 runs).
    flipped = bytes([sealed.ciphertext[-1] ^ 1])
    tampered = SealedSecrets(
        sealed.key_id, sealed.wrapped_data_key, sealed.ciphertext[:-1] + flipped
    )
    with pytest.raises(KeyringError):
        keyring.open(tampered, "paygate/gateway/cmp_1/gw_1")


def test_rewrap_moves_a_data_key_to_the_primary_without_touching_the_data() -> None:
    old = generate_master_key("old")
    new = generate_master_key("new")
    sealed = Keyring.parse(old).seal({"k": "v"}, "aad")
    both = Keyring.parse(f"{new},{old}")
    rewrapped = both.rewrap(sealed, "aad")
    assert rewrapped.key_id == "new"
    assert rewrapped.ciphertext == sealed.ciphertext
    assert Keyring.parse(new).open(rewrapped, "aad") == {"k": "v"}
    with pytest.raises(KeyringError, match="master key 'old' is not configured"):
        Keyring.parse(new).open(sealed, "aad")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nokey",
        "a:not-base64!",
        "a:c2hvcnQ=",
        f"{generate_master_key('a')},{generate_master_key('a')}",
    ],
)
def test_malformed_key_configuration_is_refused(text: str) -> None:
    with pytest.raises(KeyringError):
        Keyring.parse(text)
