"""The sidebar: one list of entries, grouped, filtered by permission, every entry a real page."""

from __future__ import annotations

import re

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import ROLE_PERMISSIONS, Permission, Role
from paygate.kit.deps import Origin
from paygate.web.navigation import GROUPS, NAV, NavEntry, sidebar
from tests.web.helpers import WebUser


def _auth(role: Role) -> AuthContext:
    return AuthContext(
        company_id="co_1",
        actor_type="user",
        actor_id="usr_1",
        actor_label="a@example.com",
        permissions=ROLE_PERMISSIONS[role],
        origin=Origin(None, None, None),
        role=role,
    )


def test_every_entry_names_a_known_group_and_appears_once() -> None:
    assert all(entry.group in GROUPS for entry in NAV)
    hrefs = [entry.href for entry in NAV]
    assert len(hrefs) == len(set(hrefs))


def test_groups_keep_their_order_and_an_added_line_lands_in_its_group() -> None:
    added = (*NAV, NavEntry("Billing", "/later", "Later page", Permission.INVOICES_READ))
    groups = sidebar(_auth(Role.OWNER), "/later/abc", added)
    assert [g.heading for g in groups] == [h for h in GROUPS if any(g.heading == h for g in groups)]
    billing = next(g for g in groups if g.heading == "Billing")
    assert billing.links[-1].label == "Later page"
    assert [link.href for g in groups for link in g.links if link.current] == ["/later"]


def test_entries_need_their_permission() -> None:
    restricted = (NavEntry("Settings", "/owners-only", "Owners only", Permission.MEMBERS_WRITE),)
    assert sidebar(_auth(Role.VIEWER), "/", restricted) == []
    assert sidebar(_auth(Role.OWNER), "/", restricted)[0].links[0].label == "Owners only"


def test_the_longest_matching_entry_is_current() -> None:
    entries = (
        NavEntry("Settings", "/security", "Security"),
        NavEntry("Settings", "/security/keys", "Encryption keys"),
    )
    links = sidebar(_auth(Role.OWNER), "/security/keys/rotations/x", entries)[0].links
    assert [link.label for link in links if link.current] == ["Encryption keys"]
    # A prefix of a word is not a match.
    assert not any(
        link.current for link in sidebar(_auth(Role.OWNER), "/securityx", entries)[0].links
    )


async def test_every_sidebar_link_is_a_page_that_answers(owner: WebUser) -> None:
    html = (await owner.client.get("/account")).text
    nav = re.search(r'<nav class="side-nav".*?</nav>', html, re.S)
    assert nav
    hrefs = re.findall(r'<a href="([^"]+)"', nav.group(0))
    assert hrefs == [e.href for g in GROUPS for e in NAV if e.group == g]
    for href in hrefs:
        page = await owner.client.get(href)
        assert page.status_code == 200, href
        assert f'href="{href}" aria-current="page"' in page.text, href
