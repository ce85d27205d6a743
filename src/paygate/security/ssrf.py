"""Outbound URLs: the one check before paygate calls an address a tenant typed in (SSRF).

A tenant configures where paygate sends requests (a custom gateway's base URL, every
built-in type's `api_base_url`, and later outbound webhook endpoints). Without a check,
a tenant could aim paygate at its own network: the cloud metadata service
(169.254.169.254), the database, an admin port on 127.0.0.1.

`check_outbound_url` is the check for configuration time; `GuardedTransport` repeats it
at connection time, when the name is resolved for the request itself, and connects to the
address it checked (so DNS rebinding between check and connect cannot slip through).
Both are for any outbound feature: webhook endpoints use the same two when they come.

Test gateways skip the address check in development and test mode, so the local
emulators on 127.0.0.1 keep working; in production (the
`test_gateways_reach_private_addresses` setting) they get it too, as live gateways always do.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host name -> every address it resolves to (IPv4 and IPv6, as text).
Resolver = Callable[[str], Awaitable[Sequence[str]]]

PRIVATE_ADDRESS = "points at a private address"

# Ranges `is_global` lets through but no gateway lives in.
_EXTRA_BLOCKED = (
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (is_global is False, kept explicit)
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# inet_aton accepts 1 to 4 dot-separated parts, each decimal, octal (0...) or hex (0x...).
_NUMERIC_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")


class UnsafeURL(ValueError):
    """The URL may not be called; `reason` is the short text shown next to the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def resolve_host(host: str) -> list[str]:
    """Every address the system resolver gives for `host` (in a thread: getaddrinfo blocks)."""
    infos = await asyncio.to_thread(socket.getaddrinfo, host, None, 0, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_ipv4_loosely(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address `host` means under inet_aton's rules (2130706433, 0x7f.1, 0177.0.0.1).

    None when `host` is not a numeric IPv4 form at all (a name, or IPv6).
    """
    parts = host.split(".")
    if host.endswith("."):
        parts = parts[:-1]
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART.match(part) for part in parts):
        return None
    numbers: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    # Every part but the last is one byte; the last fills the remaining bytes.
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = 0
    for n in leading:
        value = value << 8 | n
    value = value << (8 * (4 - len(leading))) | last
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> tuple[IPAddress, bool] | None:
    """The address a host written as an IP literal means, and whether it is written the
    canonical way; None for a host name."""
    bare = host.strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        loose = parse_ipv4_loosely(bare)
        return (loose, False) if loose is not None else None
    # Only IPv4 has the odd forms (inet_aton); IPv6 text forms are all standard.
    return address, address.version == 6 or str(address) == bare


def is_forbidden_address(address: IPAddress) -> bool:
    """Private, loopback, link-local, multicast, reserved, unspecified, CGNAT, ULA, and any
    IPv6 form that carries such an IPv4 address (mapped, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.extend(address.teredo)
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(is_forbidden_address(inner) for inner in embedded):
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or any(address in network for network in _EXTRA_BLOCKED)
    )


def check_url_shape(url: str, *, live: bool) -> str:
    """The URL's host once the URL is an http(s) URL without user info (https when live)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a bad port raises here
    except ValueError:
        raise UnsafeURL("must be an http(s) URL with a host") from None
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeURL("must be an http(s) URL with a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("must not contain a user name or password")
    if live and parts.scheme != "https":
        raise UnsafeURL("must use https for a live gateway")
    return host


async def checked_addresses(host: str, resolver: Resolver) -> list[IPAddress]:
    """Every address `host` stands for, each allowed; raises UnsafeURL otherwise."""
    literal = literal_address(host)
    if literal is not None:
        address, canonical = literal
        if is_forbidden_address(address):
            raise UnsafeURL(PRIVATE_ADDRESS)
        if not canonical:
            raise UnsafeURL("uses an unusual IP address notation: write the address plainly")
        return [address]
    try:
        resolved = [ipaddress.ip_address(text.split("%")[0]) for text in await resolver(host)]
    except (OSError, ValueError):
        raise UnsafeURL("has a host name that does not resolve") from None
    if not resolved:
        raise UnsafeURL("has a host name that does not resolve")
    # All of them: a name with one public and one private address is refused.
    if any(is_forbidden_address(address) for address in resolved):
        raise UnsafeURL(PRIVATE_ADDRESS)
    return resolved


async def check_outbound_url(
    url: str, *, live: bool, resolver: Resolver = resolve_host, https_only: bool | None = None
) -> None:
    """Raise UnsafeURL when paygate must not call `url`.

    Always: http(s) with a host and no user info. Live: the host (an IP literal in any
    notation, or every address its name resolves to) must be public, and https only unless
    `https_only` is False (a test gateway outside development).
    """
    host = check_url_shape(url, live=live if https_only is None else https_only)
    if live:
        await checked_addresses(host, resolver)


class OutboundRefused(httpx.ConnectError):
    """The transport refused to connect: the address is not public (nothing was sent)."""


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks every request's host at connection time and connects to the checked address.

    The name is resolved once, every address checked, and the request sent to the first
    one (Host header and TLS server name stay the original name, so certificates are still
    verified against it). A name that resolved to a public address when the gateway was
    saved and to 127.0.0.1 now (DNS rebinding) is refused here.
    """

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        resolver: Resolver = resolve_host,
        require_https: bool = True,
    ) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.resolver = resolver
        # False for a test gateway outside development: public addresses only, http allowed.
        self.require_https = require_https

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        try:
            check_url_shape(str(request.url), live=self.require_https)
            addresses = await checked_addresses(host, self.resolver)
        except UnsafeURL as exc:
            raise OutboundRefused(f"refused to connect: the URL {exc.reason}") from None
        pinned = str(addresses[0])
        if pinned != host.strip("[]"):
            request.url = request.url.copy_with(host=pinned)
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
