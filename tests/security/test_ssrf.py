"""A tenant cannot aim a live gateway at paygate's own network (SSRF).

Host names resolve through a fake resolver: no test touches DNS or the network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from paygate.app import create_app
from paygate.db import Database
from paygate.gateways.adapters.base import AdapterConfig, Environment, GatewayType
from paygate.gateways.adapters.base_errors import GatewayMisconfigured
from paygate.gateways.adapters.custom import CustomGatewayAdapter
from paygate.gateways.adapters.stripe import StripeAdapter
from paygate.gateways.models import Gateway
from paygate.security.crypto import generate_master_key
from paygate.security.ssrf import (
    PRIVATE_ADDRESS,
    GuardedTransport,
    OutboundRefused,
    UnsafeURL,
    check_outbound_url,
    parse_ipv4_loosely,
)
from paygate.settings import Mode, Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator

NAMES = {
    "localhost": ["127.0.0.1", "::1"],
    "metadata.example.net": ["169.254.169.254"],
    "intranet.example.net": ["10.0.0.1"],
    # One public and one private address: refused, every address counts.
    "split.example.net": ["93.184.216.34", "192.168.1.10"],
    "pay.example.com": ["93.184.216.34"],
    "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "ula.example.net": ["fd00::1"],
}


async def fake_resolver(host: str) -> Sequence[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


REFUSED_URLS = [
    "https://127.0.0.1/",
    "https://127.0.0.1:8443/paygate",
    "https://10.0.0.1/",
    "https://172.16.5.4/",
    "https://192.168.0.1/",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/",  # CGNAT
    "https://0.0.0.0/",
    "https://224.0.0.1/",  # multicast
    "https://240.0.0.1/",  # reserved
    "https://[::1]/",
    "https://[::]/",
    "https://[fe80::1]/",
    "https://[fd12:3456::1]/",  # ULA
    "https://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "https://[::ffff:a00:1]/",  # IPv4-mapped 10.0.0.1, hex form
    "https://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 around 169.254.169.254
    "https://2130706433/",  # decimal 127.0.0.1
    "https://0x7f.1/",  # hex and shorthand
    "https://0177.0.0.1/",  # octal
    "https://0x7f000001/",
    "https://127.1/",
    "https://localhost/",
    "https://metadata.example.net/",
    "https://intranet.example.net/",
    "https://split.example.net/",
    "https://ula.example.net/",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_live_urls_at_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL) as refused:
        await check_outbound_url(url, live=True, resolver=fake_resolver)
    assert refused.value.reason == PRIVATE_ADDRESS


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://pay.example.com/", "must use https for a live gateway"),
        ("https://user:pw@pay.example.com/", "must not contain a user name or password"),
        ("https://user@pay.example.com/", "must not contain a user name or password"),
        ("ftp://pay.example.com/", "must be an http(s) URL with a host"),
        ("https:///nohost", "must be an http(s) URL with a host"),
        ("https://pay.example.com:99999/", "must be an http(s) URL with a host"),
        ("https://unknown.example.org/", "has a host name that does not resolve"),
        # A public address in an odd notation: 93.184.216.34 as one decimal number.
        ("https://1572395042/", "uses an unusual IP address notation: write the address plainly"),
    ],
)
async def test_other_unsafe_live_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL) as refused:
        await check_outbound_url(url, live=True, resolver=fake_resolver)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "url",
    ["https://pay.example.com/v1", "https://93.184.216.34/", "https://v6.example.com/"],
)
async def test_public_live_urls_pass(url: str) -> None:
    await check_outbound_url(url, live=True, resolver=fake_resolver)


async def test_test_mode_keeps_the_local_emulators_reachable() -> None:
    async def no_dns(host: str) -> Sequence[str]:
        raise AssertionError("test mode never resolves")

    await check_outbound_url("http://127.0.0.1:8123/", live=False, resolver=no_dns)
    with pytest.raises(UnsafeURL):
        await check_outbound_url("http://u:p@127.0.0.1/", live=False, resolver=no_dns)


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "10.1.2", "0x0a000001", "1.2.3.4"]
)
def test_loose_ipv4_forms_mean_what_inet_aton_says(host: str) -> None:
    parsed = parse_ipv4_loosely(host)
    assert parsed == ipaddress.IPv4Address(socket.inet_aton(host))


@pytest.mark.parametrize("host", ["pay.example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1"])
def test_names_and_invalid_numbers_are_not_loose_ipv4(host: str) -> None:
    assert parse_ipv4_loosely(host) is None


# --- through the API ------------------------------------------------------------------


def live_custom(base_url: str) -> dict[str, Any]:
    return {
        "name": "Own gateway",
        "gateway_type": "custom",
        "environment": "live",
        "configuration": {
            "base_url": base_url,
            "api_key": "k" * 24,
            "webhook_secret": "whsec_" + "a" * 32,
        },
    }


def live_stripe(api_base_url: str) -> dict[str, Any]:
    return {
        "name": "Stripe live",
        "gateway_type": "stripe",
        "environment": "live",
        "configuration": {
            "secret_key": "sk_live_" + "x" * 24,
            "publishable_key": "pk_live_" + "y" * 24,
            "api_base_url": api_base_url,
        },
    }


@pytest.fixture
def resolver(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.state, "outbound_resolver", fake_resolver, raising=False)


async def gateway_count(database: Database, tenant: Tenant) -> int:
    async with database.transaction() as session:
        count = await session.scalar(
            select(func.count()).select_from(Gateway).where(Gateway.company_id == tenant.company_id)
        )
    return int(count or 0)


API_REFUSED = [
    "https://127.0.0.1/",
    "http://127.0.0.1/",
    "https://10.0.0.1/",
    "https://169.254.169.254/",
    "https://[::1]/",
    "https://localhost/",
    "https://metadata.example.net/",
    "https://2130706433/",
    "https://0x7f.1/",
]


@pytest.mark.usefixtures("resolver")
@pytest.mark.parametrize("url", API_REFUSED)
async def test_a_live_custom_gateway_at_a_private_address_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, url: str
) -> None:
    response = await client.post("/api/v1/gateways", json=live_custom(url), headers=tenant.headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == "configuration.base_url"
    if url.startswith("https://"):
        assert error == {
            "field": "configuration.base_url",
            "message": PRIVATE_ADDRESS,
            "code": "unsafe_url",
        }
    assert await gateway_count(database, tenant) == 0


@pytest.mark.usefixtures("resolver")
@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1", "https://10.0.0.1", "https://169.254.169.254", "https://[::1]:8443"],
)
async def test_a_live_api_base_url_at_a_private_address_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, url: str
) -> None:
    response = await client.post("/api/v1/gateways", json=live_stripe(url), headers=tenant.headers)

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "configuration.api_base_url", "message": PRIVATE_ADDRESS, "code": "unsafe_url"}
    ]
    assert await gateway_count(database, tenant) == 0


@pytest.mark.usefixtures("resolver")
async def test_a_live_gateway_at_a_public_address_is_saved(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    custom = await client.post(
        "/api/v1/gateways", json=live_custom("https://pay.example.com/v1"), headers=tenant.headers
    )
    assert custom.status_code == 201, custom.text
    stripe = await client.post(
        "/api/v1/gateways", json=live_stripe("https://93.184.216.34"), headers=tenant.headers
    )
    assert stripe.status_code == 201, stripe.text


@pytest.mark.usefixtures("resolver")
async def test_switching_a_test_gateway_to_live_checks_its_stored_address(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    test_mode = {**live_custom("https://127.0.0.1:9/"), "environment": "test"}
    created = await client.post("/api/v1/gateways", json=test_mode, headers=tenant.headers)
    assert created.status_code == 201, created.text  # test gateways may use the emulators

    response = await client.patch(
        f"/api/v1/gateways/{created.json()['id']}",
        json={"environment": "live"},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "configuration.base_url"
    after = await client.get(f"/api/v1/gateways/{created.json()['id']}", headers=tenant.headers)
    assert after.json()["environment"] == "test"


# --- at connection time ----------------------------------------------------------------


async def test_a_live_adapter_refuses_a_name_that_now_resolves_to_loopback(
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    """DNS rebinding: the name was public when saved; at call time it points at 127.0.0.1."""
    port = httpx.URL(custom_gateway_emulator.base_url).port

    async def rebound(host: str) -> Sequence[str]:
        return ["127.0.0.1"]

    adapter = CustomGatewayAdapter(
        AdapterConfig(
            gateway_type=GatewayType.CUSTOM,
            environment=Environment.LIVE,
            values={
                "base_url": f"https://pay.example.com:{port}",
                "api_key": custom_gateway_emulator.api_key,
            },
            timeout_seconds=5,
            resolver=rebound,
        )
    )
    with pytest.raises(GatewayMisconfigured, match="private address"):
        await adapter.test_connection()
    assert custom_gateway_emulator.requests == []


async def test_a_live_stripe_gateway_refuses_a_name_that_now_resolves_to_loopback(
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    """The Stripe SDK builds its own HTTP client; a live gateway's goes through the guard too."""
    port = httpx.URL(custom_gateway_emulator.base_url).port

    async def rebound(host: str) -> Sequence[str]:
        return ["127.0.0.1"]

    adapter = StripeAdapter(
        AdapterConfig(
            gateway_type=GatewayType.STRIPE,
            environment=Environment.LIVE,
            values={
                "secret_key": "sk_live_" + "x" * 24,
                "publishable_key": "pk_live_" + "x" * 24,
                "api_base_url": f"https://api.stripe-proxy.example:{port}",
            },
            timeout_seconds=5,
            resolver=rebound,
        )
    )
    with pytest.raises(GatewayMisconfigured, match="private address"):
        await adapter.test_connection()
    assert custom_gateway_emulator.requests == []


async def test_the_guard_connects_to_the_address_it_checked() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok"})

    transport = GuardedTransport(httpx.MockTransport(answer), resolver=fake_resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://pay.example.com/health")
        await client.get("https://v6.example.com:8443/health")
        with pytest.raises(OutboundRefused):
            await client.get("https://split.example.net/health")
        with pytest.raises(OutboundRefused):
            await client.get("https://[::1]/health")

    assert response.status_code == 200
    sent, sent_v6 = seen
    assert sent.url.host == "93.184.216.34"
    assert sent.headers["host"] == "pay.example.com"
    assert sent.extensions["sni_hostname"] == "pay.example.com"
    assert str(sent_v6.url) == "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/health"
    assert sent_v6.headers["host"] == "v6.example.com:8443"


# --- test gateways in production ---------------------------------------------------------


@pytest.fixture
async def production_like(settings: Settings, database: Database) -> AsyncIterator[Any]:
    """A paygate process configured as production is about outbound addresses: test
    gateways may not reach private addresses either (the emulators are a development aid)."""
    app = create_app(
        settings.model_copy(update={"test_gateways_reach_private_addresses": False}),
        database=database,
    )
    app.state.outbound_resolver = fake_resolver
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://paygate.test"
    ) as client:
        yield client


def test_outside_development_test_gateways_reach_only_public_addresses(
    settings: Settings,
) -> None:
    assert settings.test_gateways_reach_private_addresses is None
    assert settings.private_addresses_for_test_gateways is True  # mode "test": emulators
    production = Settings(
        mode=Mode.PRODUCTION,
        jwt_secret=SecretStr("p" * 40),
        master_keys=SecretStr(generate_master_key("prod-1")),
    )
    assert production.private_addresses_for_test_gateways is False


async def test_a_test_gateway_cannot_reach_private_addresses_in_production(
    client: httpx.AsyncClient,
    production_like: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    """Environment "test" is every tenant's to choose: it must not be a way around the
    address check. Saving one at 127.0.0.1 or the metadata address is refused ..."""
    for url in ("http://127.0.0.1:9/", "http://169.254.169.254/", "http://localhost/"):
        refused = await production_like.post(
            "/api/v1/gateways",
            json={**live_custom(url), "environment": "test"},
            headers=tenant.headers,
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["code"] == "unsafe_url"
    assert await gateway_count(database, tenant) == 0

    # ... and one saved before (or by a process that allowed it) is refused when called:
    # the emulator on 127.0.0.1 receives nothing.
    saved = await client.post(
        "/api/v1/gateways",
        json={
            **live_custom(custom_gateway_emulator.base_url),
            "environment": "test",
            "configuration": {
                "base_url": custom_gateway_emulator.base_url,
                "api_key": custom_gateway_emulator.api_key,
            },
        },
        headers=other_tenant.headers,
    )
    assert saved.status_code == 201, saved.text
    tested = await production_like.post(
        f"/api/v1/gateways/{saved.json()['id']}/test", headers=other_tenant.headers
    )
    assert tested.status_code == 200, tested.text
    assert tested.json()["ok"] is False
    assert "private address" in tested.json()["message"]
    assert custom_gateway_emulator.requests == []

    # A test gateway at a public address is still saved.
    public = await production_like.post(
        "/api/v1/gateways",
        json={**live_custom("https://pay.example.com/v1"), "environment": "test"},
        headers=tenant.headers,
    )
    assert public.status_code == 201, public.text
