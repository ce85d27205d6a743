"""The sidebar: every signed-in page, grouped. Adding a page to it is one line in `NAV`.

An entry appears to a user who holds its permission (None: every member). Pages that are
not built yet have no entry, so the sidebar never links to a 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission


@dataclass(frozen=True)
class NavEntry:
    group: str  # one of GROUPS
    href: str
    label: str
    permission: Permission | None = None
    # An `icon` of _macros.html: home, invoice, card, plug, pulse, route, webhook, chart,
    # users, key, lock, list, rocket, dot.
    icon: str = "dot"


# Where signing in (and the brand link) leads.
HOME = "/overview"

# Group headings in the order they are shown ("" is the top group, without a heading).
GROUPS = ("", "Billing", "Processing", "Insights", "Settings")

# Within a group, entries show in the order listed here.
NAV: tuple[NavEntry, ...] = (
    NavEntry("", "/overview", "Overview", None, "home"),
    NavEntry("Billing", "/invoices", "Invoices", Permission.INVOICES_READ, "invoice"),
    NavEntry("Billing", "/payments", "Payments", Permission.PAYMENTS_READ, "card"),
    NavEntry("Processing", "/gateways", "Gateways", Permission.GATEWAYS_READ, "plug"),
    NavEntry("Processing", "/health", "Health", Permission.GATEWAYS_READ, "pulse"),
    NavEntry(
        "Processing", "/health/failures", "Failed transactions", Permission.PAYMENTS_READ, "list"
    ),
    NavEntry("Processing", "/routing", "Routing", Permission.GATEWAYS_READ, "route"),
    NavEntry(
        "Processing", "/webhook-events", "Gateway events", Permission.GATEWAYS_READ, "webhook"
    ),
    NavEntry("Processing", "/webhook-endpoints", "Webhooks", Permission.WEBHOOKS_READ, "webhook"),
    NavEntry("Settings", "/members", "Members", Permission.MEMBERS_READ, "users"),
    NavEntry("Settings", "/api-keys", "API keys", Permission.API_KEYS_READ, "key"),
    NavEntry("Settings", "/security/keys", "Encryption keys", Permission.GATEWAYS_READ, "lock"),
    NavEntry("Settings", "/audit", "Audit log", Permission.AUDIT_READ, "list"),
    NavEntry("Settings", "/health/alerts", "Alerts", Permission.GATEWAYS_READ, "pulse"),
)


@dataclass(frozen=True)
class NavLink:
    href: str
    label: str
    icon: str
    current: bool


@dataclass(frozen=True)
class NavGroup:
    heading: str
    links: list[NavLink]


def _is_under(path: str, href: str) -> bool:
    return path == href or path.startswith(href.rstrip("/") + "/")


def sidebar(auth: AuthContext, path: str, entries: tuple[NavEntry, ...] = NAV) -> list[NavGroup]:
    """The groups this user sees, with the entry for `path` marked current.

    The longest matching href wins, so a page under /security/keys marks Encryption keys
    even if a /security entry is added later.
    """
    visible = [e for e in entries if e.permission is None or auth.can(e.permission)]
    matches = [e.href for e in visible if _is_under(path, e.href)]
    current = max(matches, key=len) if matches else None
    groups: list[NavGroup] = []
    for heading in GROUPS:
        links = [
            NavLink(e.href, e.label, e.icon, e.href == current)
            for e in visible
            if e.group == heading
        ]
        if links:
            groups.append(NavGroup(heading, links))
    return groups
