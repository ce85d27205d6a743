"""The audit log keeps each object's name as it was, filters by known types and actions, and
breaks emails only between their parts."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any, get_type_hints

from paygate.db import Database
from paygate.security import audit
from paygate.security.audit import verify_chains
from paygate.security.audit_actions import AUDIT_ACTIONS, AuditAction
from paygate.security.audit_object_types import AUDIT_OBJECT_TYPES, AuditObjectType
from paygate.web.audit_pages import ACTIONS, OBJECT_TYPE_LABELS, OBJECT_TYPES, OTHER_ACTIONS
from tests.web.helpers import WebUser, sandbox_form

SRC = Path(__file__).resolve().parents[2] / "src" / "paygate"
LIST = SRC / "security" / "audit_actions.py"
TYPE_LIST = SRC / "security" / "audit_object_types.py"
ACTION = re.compile(r"[a-z_]+\.[a-z_]+")
OBJECT_TYPE = re.compile(r"[a-z_]+")
# SQL that writes audit rows itself (the reserve step's one statement), out of mypy's sight:
# the action, then the object type right after it.
SQL_ACTION = re.compile(
    r"INSERT INTO audit_entries.*?VALUES\s*\([^)]*?'([a-z_]+\.[a-z_]+)'", re.DOTALL
)
SQL_OBJECT_TYPE = re.compile(
    r"INSERT INTO audit_entries.*?VALUES\s*\([^)]*?'[a-z_]+\.[a-z_]+',\s*'([a-z_]+)'", re.DOTALL
)


def _constants(node: ast.expr) -> list[str]:
    """The string constants an expression can be: each branch of a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def _recorded(annotation: str, keywords: tuple[str, ...], sql: re.Pattern[str]) -> set[str]:
    """Every value of one audit field written in the code: given as a keyword, passed to a
    helper whose parameter is annotated `annotation`, assigned to a variable annotated so,
    or written by SQL straight into audit_entries."""
    lists = (LIST, TYPE_LIST)
    trees = {path: ast.parse(path.read_text()) for path in SRC.rglob("*.py") if path not in lists}
    helpers: dict[str, set[int]] = {}  # function name -> positions of its annotated parameter
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                params = [a for a in node.args.args if a.arg not in ("self", "cls")]
                for index, param in enumerate(params):
                    if param.annotation is not None and annotation in ast.unparse(param.annotation):
                        helpers.setdefault(node.name, set()).add(index)
    found: set[str] = set()
    for path, tree in trees.items():
        found.update(sql.findall(path.read_text()))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.AnnAssign)
                and node.value is not None
                and annotation in ast.unparse(node.annotation)
            ):
                found.update(_constants(node.value))
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg in keywords:
                    found.update(_constants(keyword.value))
            name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            name = node.func.id if isinstance(node.func, ast.Name) else name
            for index in helpers.get(name, ()):
                if index < len(node.args):
                    found.update(_constants(node.args[index]))
    return found


def recorded_actions() -> set[str]:
    """Every action written in the code."""
    found = _recorded("AuditAction", ("action", "action_"), SQL_ACTION)
    return {value for value in found if ACTION.fullmatch(value)}


def recorded_object_types() -> set[str]:
    """Every object type written in the code."""
    found = _recorded("AuditObjectType", ("object_type",), SQL_OBJECT_TYPE)
    return {value for value in found if OBJECT_TYPE.fullmatch(value)}


def test_every_action_the_code_records_is_a_filter_choice() -> None:
    # mypy holds every audit.record / record_by call to AuditAction; this also reads the
    # calls it cannot see through (keyword arguments passed on as **fields, SQL).
    assert get_type_hints(audit.record)["action"] is AuditAction
    assert get_type_hints(audit.record_by)["action"] is AuditAction
    recorded = recorded_actions()
    assert {"payment.created", "gateway.breaker_opened", "webhook_endpoint.test_sent"} <= recorded
    assert recorded - set(AUDIT_ACTIONS) == set()
    offered = [code for codes in ACTIONS.values() for code in codes]
    assert sorted(offered) == sorted(AUDIT_ACTIONS)
    assert OTHER_ACTIONS not in ACTIONS, "give each action namespace a heading"


def test_every_listed_action_is_written_somewhere() -> None:
    """The list holds no action the code never records (the filter offers no dead ends)."""
    code = "\n".join(p.read_text() for p in SRC.rglob("*.py") if p != LIST)
    unused = [a for a in AUDIT_ACTIONS if f'"{a}"' not in code and f"'{a}'" not in code]
    assert unused == []


async def test_the_page_offers_every_action(owner: WebUser) -> None:
    page = (await owner.client.get("/audit")).text
    select = page[page.index('<select id="f-action"') :]
    select = select[: select.index("</select>")]
    assert set(re.findall(r'<option value="([^"]+)"', select)) == set(AUDIT_ACTIONS)
    assert '<optgroup label="Webhook endpoints">' in select
    assert '<option value="webhook_endpoint.disabled">' in select
    assert '<option value="routing_rule.created">' in select


def test_every_object_type_the_code_records_is_a_filter_choice() -> None:
    # mypy holds every audit.record / record_by call to AuditObjectType; this also reads the
    # calls it cannot see through (keyword arguments passed on as **fields, SQL).
    assert get_type_hints(audit.record)["object_type"] == AuditObjectType | None
    assert get_type_hints(audit.record_by)["object_type"] == AuditObjectType | None
    recorded = recorded_object_types()
    assert {"payment", "webhook_endpoint", "routing_rule_set", "alert_recipient"} <= recorded
    assert recorded - set(AUDIT_OBJECT_TYPES) == set()
    assert list(OBJECT_TYPES) == list(AUDIT_OBJECT_TYPES)
    assert sorted(OBJECT_TYPE_LABELS) == sorted(AUDIT_OBJECT_TYPES), "give each type a label"


def test_every_listed_object_type_is_written_somewhere() -> None:
    """The list holds no type the code never records (the filter offers no dead ends)."""
    assert set(AUDIT_OBJECT_TYPES) - recorded_object_types() == set()


async def test_the_page_offers_every_object_type(owner: WebUser) -> None:
    page = (await owner.client.get("/audit")).text
    select = page[page.index('<select id="f-object_type"') :]
    select = select[: select.index("</select>")]
    offered = re.findall(r'<option value="([^"]*)"', select)
    assert [value for value in offered if value] == list(AUDIT_OBJECT_TYPES)
    assert '<option value="webhook_endpoint">Webhook endpoint</option>' in select
    assert '<option value="routing_rule_set">Routing rule set</option>' in select


async def test_a_deleted_gateway_still_reads_by_name(
    owner: WebUser, rival: WebUser, database: Database
) -> None:
    created = await owner.client.post(
        "/api/v1/gateways",
        json={"gateway_type": "sandbox", "name": "Payroll Sandbox"},
        headers=owner.bearer,
    )
    gateway_id = created.json()["id"]
    renamed = await owner.client.patch(
        f"/api/v1/gateways/{gateway_id}", json={"name": "Renamed Sandbox"}, headers=owner.bearer
    )
    assert renamed.status_code == 200, renamed.text
    deleted = await owner.client.delete(f"/api/v1/gateways/{gateway_id}", headers=owner.bearer)
    assert deleted.status_code == 200, deleted.text

    entries = (
        await owner.client.get(
            "/api/v1/audit-log", params={"object_id": gateway_id}, headers=owner.bearer
        )
    ).json()["data"]
    names = {e["action"]: e["object_name"] for e in entries}
    assert names == {
        "gateway.created": "Payroll Sandbox",
        "gateway.updated": "Renamed Sandbox",
        "gateway.deleted": "Renamed Sandbox",
    }

    page = (await owner.client.get("/audit", params={"object_id": gateway_id})).text
    assert '<span class="object-name">Payroll Sandbox</span>' in page
    assert '<span class="object-name">Renamed Sandbox</span>' in page
    assert "Payroll Sandbox" not in (await rival.client.get("/audit")).text

    # Named entries are covered by the hash chain like the rest.
    async with database.transaction() as session:
        report = await verify_chains(session)
    assert report.ok, report.broken


async def test_filters_are_selects_of_known_types_and_actions(owner: WebUser) -> None:
    await owner.post("/gateways", sandbox_form(name="Filtered"))
    page = (await owner.client.get("/audit", params={"action": "gateway.created"})).text
    assert '<select id="f-object_type" name="object_type">' in page
    assert '<select id="f-action" name="action">' in page
    for value in OBJECT_TYPES:
        assert f'<option value="{value}"' in page
    assert '<option value="gateway.created" selected>' in page
    rows = re.findall(r"<code class=\"action\">([^<]+)</code>", page)
    assert rows
    assert set(rows) == {"gateway.created"}
    # Only successes here: no outcome badge (failures and denials get one).
    assert "badge-outcome-" not in page
    # A value from a link that is not in the lists still filters, and shows as chosen.
    odd = (await owner.client.get("/audit", params={"action": "webhook.replayed"})).text
    assert '<option value="webhook.replayed" selected>' in odd


async def test_emails_break_only_between_their_parts(owner: WebUser, app: Any) -> None:
    page = (await owner.client.get("/audit")).text
    local, domain = owner.email.split("@")
    assert f"{local}@<wbr>{domain.replace('.', '<wbr>.')}" in page
