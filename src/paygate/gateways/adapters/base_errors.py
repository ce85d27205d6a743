"""The small error taxonomy every gateway adapter raises (declined, unavailable,
misconfigured, rejected).
"""

from __future__ import annotations

from typing import ClassVar

# Messages are shown to users and written to logs: they never contain a secret.


class GatewayError(Exception):
    code: ClassVar[str] = "gateway_error"

    def __init__(self, message: str, *, gateway_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.gateway_code = gateway_code


class GatewayDeclined(GatewayError):
    """The gateway refused the payment itself (card declined, insufficient funds, ...)."""

    code = "declined"

    def __init__(
        self,
        message: str,
        *,
        decline_code: str,
        hard: bool,
        gateway_code: str | None = None,
    ) -> None:
        super().__init__(message, gateway_code=gateway_code)
        self.decline_code = decline_code
        self.hard = hard


class GatewayUnavailable(GatewayError):
    """Network error, timeout or 5xx: safe to retry or fail over once the outcome is known."""

    code = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        request_sent: bool = True,
        gateway_code: str | None = None,
        network: bool = False,
        refused: bool = False,
    ) -> None:
        super().__init__(message, gateway_code=gateway_code)
        # False only when the request certainly never reached the gateway (connect failed):
        # otherwise the gateway may have acted on it and the outcome is unknown.
        self.request_sent = request_sent
        # The network failed (no connection, reset, timeout), rather than the gateway
        # answering with an error: what a later retry may get past.
        self.network = network
        # The gateway answered that it did not take the request (HTTP 429, or a custom
        # gateway's 503: docs/custom-gateway.md): nothing was done, so routing may send the
        # payment to another gateway without asking this one first.
        self.refused = refused


class GatewayTimeout(GatewayUnavailable):
    code = "timeout"

    def __init__(self, message: str, *, request_sent: bool) -> None:
        # A timeout after the request was sent leaves the outcome unknown.
        super().__init__(message, request_sent=request_sent, network=True)


class GatewayMisconfigured(GatewayError):
    """Credentials or account settings are wrong: retrying will not help."""

    code = "misconfigured"


class GatewayRejected(GatewayError):
    """The gateway refused the request as invalid."""

    code = "rejected"
