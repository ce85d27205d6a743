"""PayPal's Webhooks Management API and signed webhook deliveries, for the PayPal emulator.

Written from developer.paypal.com's reference (Webhooks v1) and its webhook integration
guide:
- POST /v1/notifications/webhooks {url, event_types: [{name}]} -> 201 {id, url,
  event_types: [{name, description}], links}; a URL already subscribed by the app answers
  400 WEBHOOK_URL_ALREADY_EXISTS, a missing url or event_types 400 VALIDATION_ERROR.
  GET /v1/notifications/webhooks {"webhooks": [...]}; DELETE .../{id} 204.
- POST /v1/notifications/verify-webhook-signature {auth_algo, cert_url, transmission_id,
  transmission_sig, transmission_time, webhook_id, webhook_event} -> {"verification_status":
  "SUCCESS" | "FAILURE"}. A missing field answers 400 VALIDATION_ERROR.
- GET /v1/notifications/certs/{cert id}: the signing certificate (PEM).

Signing, as PayPal documents it: the delivery carries PAYPAL-TRANSMISSION-ID, -TIME,
-SIG, PAYPAL-CERT-URL and PAYPAL-AUTH-ALGO (SHA256withRSA); the signature is RSA
PKCS#1 v1.5 with SHA-256 over `<transmission id>|<transmission time>|<webhook id>|<CRC32 of
the body, decimal>`, made with the emulator's own key. Verification recomputes the CRC32
over the event as received (serialized the way the emulator sends bodies: compact JSON).

Deliveries go to `outbox` (`WebhookDelivery` with its `url`), for a test to POST.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import uuid
import zlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.common import WebhookDelivery

AUTH_ALGO = "SHA256withRSA"
CERT_ID = "CERT-360caa42-fca2a594-emulator"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _serialize(event: Any) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class PayPalWebhooks:
    def __init__(self, emulator: Any) -> None:
        self.emulator = emulator
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.certificate = _certificate(self._key)
        # webhook id -> (client id of the app, the webhook)
        self.webhooks: dict[str, tuple[str, dict[str, Any]]] = {}
        self.outbox: list[WebhookDelivery] = []

    def reset(self) -> None:
        self.webhooks.clear()
        self.outbox.clear()

    @property
    def cert_url(self) -> str:
        return f"{self.emulator.base_url}/v1/notifications/certs/{CERT_ID}"

    def routes(self) -> list[Route]:
        return [
            Route("/v1/notifications/webhooks", self._create, methods=["POST"]),
            Route("/v1/notifications/webhooks", self._list, methods=["GET"]),
            Route("/v1/notifications/webhooks/{webhook_id}", self._delete, methods=["DELETE"]),
            Route("/v1/notifications/verify-webhook-signature", self._verify, methods=["POST"]),
            Route("/v1/notifications/certs/{cert_id}", self._cert, methods=["GET"]),
        ]

    # --- the API ----------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        token = self.emulator.authenticate(request)
        if isinstance(token, Response):
            return token
        body = await self.emulator._json_body(request)
        if isinstance(body, Response):
            return body
        url = body.get("url")
        names = [t.get("name") for t in body.get("event_types") or [] if isinstance(t, dict)]
        if not isinstance(url, str) or not url or not names:
            return self._validation("url" if not url else "event_types")
        if any(c == token.client_id and w["url"] == url for c, w in self.webhooks.values()):
            return JSONResponse(
                {
                    "name": "WEBHOOK_URL_ALREADY_EXISTS",
                    "message": "Webhook URL already exists.",
                    "debug_id": secrets.token_hex(6),
                },
                status_code=400,
            )
        webhook_id = secrets.token_hex(12).upper()
        base = self.emulator.base_url
        webhook = {
            "id": webhook_id,
            "url": url,
            "event_types": [{"name": n, "description": n} for n in names],
            "links": [
                {
                    "href": f"{base}/v1/notifications/webhooks/{webhook_id}",
                    "rel": "self",
                    "method": "GET",
                }
            ],
        }
        self.webhooks[webhook_id] = (token.client_id, webhook)
        return JSONResponse(webhook, status_code=201)

    async def _list(self, request: Request) -> Response:
        token = self.emulator.authenticate(request)
        if isinstance(token, Response):
            return token
        mine = [w for c, w in self.webhooks.values() if c == token.client_id]
        return JSONResponse({"webhooks": mine})

    async def _delete(self, request: Request) -> Response:
        token = self.emulator.authenticate(request)
        if isinstance(token, Response):
            return token
        found = self.webhooks.get(request.path_params["webhook_id"])
        if found is None or found[0] != token.client_id:
            return self.emulator._not_found(request.path_params["webhook_id"])
        del self.webhooks[request.path_params["webhook_id"]]
        return Response(status_code=204)

    async def _verify(self, request: Request) -> Response:
        token = self.emulator.authenticate(request)
        if isinstance(token, Response):
            return token
        body = await self.emulator._json_body(request)
        if isinstance(body, Response):
            return body
        fields = (
            "auth_algo",
            "cert_url",
            "transmission_id",
            "transmission_sig",
            "transmission_time",
            "webhook_id",
        )
        for field in fields:
            if not isinstance(body.get(field), str) or not body[field]:
                return self._validation(field)
        if not isinstance(body.get("webhook_event"), dict):
            return self._validation("webhook_event")
        ok = (
            body["auth_algo"] == AUTH_ALGO
            and body["cert_url"] == self.cert_url
            and self._signature_ok(body)
        )
        return JSONResponse({"verification_status": "SUCCESS" if ok else "FAILURE"})

    def _signature_ok(self, body: dict[str, Any]) -> bool:
        crc = zlib.crc32(_serialize(body["webhook_event"]))
        message = (
            f"{body['transmission_id']}|{body['transmission_time']}|{body['webhook_id']}|{crc}"
        )
        try:
            signature = base64.b64decode(body["transmission_sig"], validate=True)
            self._key.public_key().verify(
                signature, message.encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (InvalidSignature, ValueError):
            return False
        return True

    async def _cert(self, request: Request) -> Response:
        if request.path_params["cert_id"] != CERT_ID:
            return self.emulator._not_found(request.path_params["cert_id"])
        return Response(self.certificate, media_type="application/x-pem-file")

    def _validation(self, field: str) -> JSONResponse:
        return JSONResponse(
            {
                "name": "VALIDATION_ERROR",
                "message": "Invalid request - see details",
                "debug_id": secrets.token_hex(6),
                "details": [{"field": field, "issue": "MISSING_REQUIRED_PARAMETER"}],
            },
            status_code=400,
        )

    # --- deliveries -------------------------------------------------------------------

    def notify(
        self, event_type: str, resource_type: str, resource: dict[str, Any], summary: str = ""
    ) -> list[WebhookDelivery]:
        """Queue (and return) the signed deliveries of one event to its subscribed webhooks."""
        event = {
            "id": "WH-" + secrets.token_hex(10).upper(),
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": summary or event_type.replace(".", " ").title(),
            "resource": resource,
        }
        body = _serialize(event)
        deliveries = []
        for webhook_id, (_, webhook) in self.webhooks.items():
            names = {t["name"] for t in webhook["event_types"]}
            if event_type not in names and "*" not in names:
                continue
            deliveries.append(
                WebhookDelivery(
                    event=event,
                    body=body,
                    headers=self.sign(body, webhook_id),
                    url=webhook["url"],
                )
            )
        self.outbox.extend(deliveries)
        return deliveries

    def sign(
        self, body: bytes, webhook_id: str, *, transmission_time: str | None = None
    ) -> dict[str, str]:
        """PayPal's transmission headers for `body` sent to `webhook_id`."""
        transmission_id = str(uuid.uuid1())
        when = transmission_time or _now()
        message = f"{transmission_id}|{when}|{webhook_id}|{zlib.crc32(body)}"
        signature = self._key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return {
            "content-type": "application/json",
            "paypal-auth-algo": AUTH_ALGO,
            "paypal-cert-url": self.cert_url,
            "paypal-transmission-id": transmission_id,
            "paypal-transmission-sig": base64.b64encode(signature).decode(),
            "paypal-transmission-time": when,
        }
