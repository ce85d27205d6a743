"""The monitoring JSON API: gateway health, incidents, monitor settings, alert recipients and
the failed transaction log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep, SettingsDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams, page_params
from paygate.monitoring.failures import FailureFilters
from paygate.monitoring.models import AlertRecipient
from paygate.monitoring.repository import IncidentFilters
from paygate.monitoring.schemas import (
    FailureOut,
    FailurePage,
    GatewayHealth,
    GatewayHealthSummary,
    IncidentOut,
    IncidentPage,
    MonitorSettings,
    MonitorUpdate,
    RecipientCreate,
    RecipientDeleted,
    RecipientOut,
    RecipientUpdate,
)
from paygate.monitoring.service import MonitoringService
from paygate.monitoring.status import IncidentKind

router = APIRouter(prefix="/api/v1", tags=["monitoring"], responses=PROBLEM_RESPONSES)

Id = Annotated[str, Query(max_length=40)]


def health_reader(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_READ))],
    session: SessionDep,
    settings: SettingsDep,
) -> MonitoringService:
    return MonitoringService(session, settings, auth)


def health_writer(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_WRITE))],
    session: SessionDep,
    settings: SettingsDep,
) -> MonitoringService:
    return MonitoringService(session, settings, auth)


def failure_reader(
    auth: Annotated[AuthContext, Depends(require(Permission.PAYMENTS_READ))],
    session: SessionDep,
    settings: SettingsDep,
) -> MonitoringService:
    return MonitoringService(session, settings, auth)


HealthReader = Annotated[MonitoringService, Depends(health_reader)]
HealthWriter = Annotated[MonitoringService, Depends(health_writer)]
FailureReader = Annotated[MonitoringService, Depends(failure_reader)]
Page = Annotated[PageParams, Depends(page_params)]


def recipient_out(recipient: AlertRecipient) -> RecipientOut:
    return RecipientOut.model_validate(recipient, from_attributes=True)


@router.get("/health/gateways", response_model=list[GatewayHealthSummary])
async def list_gateway_health(service: HealthReader) -> list[GatewayHealthSummary]:
    """Every gateway's status (up, degraded, down, paused, unknown) and figures."""
    return await service.summaries()


@router.get("/gateways/{gateway_id}/health", response_model=GatewayHealth)
async def get_gateway_health(
    gateway_id: ObjectId,
    service: HealthReader,
    hours: Annotated[int, Query(ge=1, le=168, description="Hours of hourly figures")] = 24,
) -> GatewayHealth:
    """One gateway's status, figures, last 90 checks, hourly figures and incidents."""
    return await service.gateway_health(gateway_id, hours=hours)


@router.patch("/gateways/{gateway_id}/monitoring", response_model=MonitorSettings)
async def update_gateway_monitoring(
    gateway_id: ObjectId, body: MonitorUpdate, service: HealthWriter
) -> MonitorSettings:
    """Set how often the gateway is checked (1-60 minutes) and after how many failed checks
    in a row it is down (1-10)."""
    return await service.update_monitor(gateway_id, body)


@router.get("/incidents", response_model=IncidentPage)
async def list_incidents(
    service: HealthReader,
    page: Page,
    gateway_id: Id | None = None,
    kind: IncidentKind | None = None,
    open: bool | None = None,
    since: datetime | None = None,
) -> IncidentPage:
    rows, cursor = await service.list_incidents(
        IncidentFilters(gateway_id=gateway_id, kind=kind, open=open, since=since), page
    )
    return IncidentPage(data=rows, has_more=cursor is not None, next_cursor=cursor)


@router.get("/incidents/{incident_id}", response_model=IncidentOut)
async def get_incident(incident_id: ObjectId, service: HealthReader) -> IncidentOut:
    return await service.get_incident(incident_id)


@router.get("/alert-recipients", response_model=list[RecipientOut])
async def list_alert_recipients(service: HealthReader) -> list[RecipientOut]:
    """Who receives which alerts. With none, the company's owners receive every alert."""
    return [recipient_out(r) for r in await service.list_recipients()]


@router.post("/alert-recipients", status_code=status.HTTP_201_CREATED, response_model=RecipientOut)
async def add_alert_recipient(body: RecipientCreate, service: HealthWriter) -> RecipientOut:
    return recipient_out(await service.add_recipient(body))


@router.patch("/alert-recipients/{recipient_id}", response_model=RecipientOut)
async def update_alert_recipient(
    recipient_id: ObjectId, body: RecipientUpdate, service: HealthWriter
) -> RecipientOut:
    return recipient_out(await service.update_recipient(recipient_id, body))


@router.delete("/alert-recipients/{recipient_id}", response_model=RecipientDeleted)
async def remove_alert_recipient(recipient_id: ObjectId, service: HealthWriter) -> RecipientDeleted:
    await service.remove_recipient(recipient_id)
    return RecipientDeleted(id=recipient_id)


@router.get("/payment-failures", response_model=FailurePage)
async def list_payment_failures(
    service: FailureReader,
    page: Page,
    gateway_id: Id | None = None,
    type: Literal["payment", "refund"] | None = None,
    failure_kind: Literal["decline", "technical"] | None = None,
    code: Annotated[str | None, Query(max_length=40)] = None,
    payment_id: Id | None = None,
    invoice_id: Id | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> FailurePage:
    """Every failed payment attempt and refund, newest first: the normalized code, the
    gateway's own code and message, and whether it was a decline or a technical failure."""
    rows, cursor = await service.failures(
        FailureFilters(
            gateway_id=gateway_id,
            type=type,
            failure_kind=failure_kind,
            code=code,
            payment_id=payment_id,
            invoice_id=invoice_id,
            since=since,
            until=until,
        ),
        page,
    )
    return FailurePage(
        data=[FailureOut.model_validate(r, from_attributes=True) for r in rows],
        has_more=cursor is not None,
        next_cursor=cursor,
    )
