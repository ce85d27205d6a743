"""The gateways JSON API: gateway configurations, their connection test, and their versions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.gateways.adapters.base import Environment, GatewayType, GatewayTypeSpec
from paygate.gateways.adapters.registry import all_specs
from paygate.gateways.credentials import accepted_previous_until
from paygate.gateways.models import Gateway
from paygate.gateways.schemas import (
    ConnectionTestOut,
    CredentialOut,
    FieldSpecOut,
    GatewayCreate,
    GatewayDeleted,
    GatewayOut,
    GatewayRestored,
    GatewayTypeOut,
    GatewayUpdate,
    GatewayVersionOut,
    LastTest,
)
from paygate.gateways.service import GatewayService
from paygate.gateways.versions import GatewayVersions
from paygate.kit.clock import utcnow
from paygate.kit.deps import KeyringDep, ResolverDep, SessionDep, SettingsDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId
from paygate.security.history import ConfigVersion
from paygate.security.history_schemas import RestoreOut, VersionNumber, VersionOut

router = APIRouter(prefix="/api/v1", tags=["gateways"], responses=PROBLEM_RESPONSES)


def _service(
    auth: AuthContext,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> GatewayService:
    return GatewayService(session, keyring, settings, auth, resolver=resolver)


def reader(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_READ))],
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> GatewayService:
    return _service(auth, session, keyring, settings, resolver)


def writer(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_WRITE))],
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> GatewayService:
    return _service(auth, session, keyring, settings, resolver)


Reader = Annotated[GatewayService, Depends(reader)]
Writer = Annotated[GatewayService, Depends(writer)]


def gateway_out(gateway: Gateway, service: GatewayService) -> GatewayOut:
    hints = gateway.secret_hints or {}
    now = utcnow()
    last_test = (
        LastTest(
            at=gateway.last_test_at,
            ok=bool(gateway.last_test_ok),
            latency_ms=gateway.last_test_latency_ms,
            message=gateway.last_test_message,
        )
        if gateway.last_test_at
        else None
    )
    return GatewayOut(
        id=gateway.id,
        name=gateway.name,
        public_label=gateway.public_label,
        gateway_type=GatewayType(gateway.gateway_type),
        environment=Environment(gateway.environment),
        enabled=gateway.enabled,
        configuration={**gateway.public_config, **{k: v["masked"] for k, v in hints.items()}},
        credentials={
            k: CredentialOut(
                masked=v["masked"],
                changed_at=v["changed_at"],
                previous_valid_until=accepted_previous_until(gateway, k, now),
            )
            for k, v in hints.items()
        },
        credentials_readable=service.credentials_readable(gateway),
        supported_currencies=list(gateway.supported_currencies),
        min_amount=gateway.min_amount,
        max_amount=gateway.max_amount,
        priority=gateway.priority,
        payment_method_types=list(gateway.payment_method_types),
        last_test=last_test,
        created_at=gateway.created_at,
        updated_at=gateway.updated_at,
    )


def gateway_version_out(version: ConfigVersion) -> GatewayVersionOut:
    """A stored snapshot as the API shows a gateway: the masks among the settings."""
    snapshot = dict(version.snapshot)
    masks = {name: c["masked"] for name, c in snapshot["credentials"].items()}
    snapshot["configuration"] = {**snapshot["configuration"], **masks}
    return GatewayVersionOut.model_validate({**VersionOut.of(version).model_dump(), **snapshot})


def gateway_type_out(spec: GatewayTypeSpec) -> GatewayTypeOut:
    return GatewayTypeOut(
        type=spec.type,
        display_name=spec.display_name,
        description=spec.description,
        payment_method_types=list(spec.payment_method_types),
        fields=[
            FieldSpecOut(
                name=f.name,
                label=f.label,
                kind=f.kind,
                required=f.required,
                secret=f.secret,
                help=f.help,
                prefixes={env: list(group) for env, group in f.prefixes.items()},
                pattern=f.pattern,
                max_length=f.max_length,
                choices=list(f.choices),
            )
            for f in spec.fields
        ],
        default_api_base_url=dict(spec.default_api_base_url),
    )


@router.get("/gateway-types", response_model=list[GatewayTypeOut])
async def list_gateway_types(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_READ))],
) -> list[GatewayTypeOut]:
    return [gateway_type_out(spec) for spec in all_specs()]


@router.get("/gateways", response_model=list[GatewayOut])
async def list_gateways(gateways: Reader) -> list[GatewayOut]:
    return [gateway_out(g, gateways) for g in await gateways.list_all()]


@router.post("/gateways", status_code=status.HTTP_201_CREATED, response_model=GatewayOut)
async def create_gateway(body: GatewayCreate, gateways: Writer) -> GatewayOut:
    return gateway_out(await gateways.create(body), gateways)


@router.get("/gateways/{gateway_id}", response_model=GatewayOut)
async def get_gateway(gateway_id: ObjectId, gateways: Reader) -> GatewayOut:
    return gateway_out(await gateways.get(gateway_id), gateways)


@router.patch("/gateways/{gateway_id}", response_model=GatewayOut)
async def update_gateway(gateway_id: ObjectId, body: GatewayUpdate, gateways: Writer) -> GatewayOut:
    return gateway_out(await gateways.update(gateway_id, body), gateways)


@router.delete("/gateways/{gateway_id}", response_model=GatewayDeleted)
async def delete_gateway(gateway_id: ObjectId, gateways: Writer) -> GatewayDeleted:
    """Deletes the gateway; once payments refer to it, archives it instead (kept for history)."""
    return GatewayDeleted(id=gateway_id, outcome=await gateways.delete(gateway_id))


@router.post("/gateways/{gateway_id}/enable", response_model=GatewayOut)
async def enable_gateway(gateway_id: ObjectId, gateways: Writer) -> GatewayOut:
    return gateway_out(await gateways.set_enabled(gateway_id, True), gateways)


@router.post("/gateways/{gateway_id}/disable", response_model=GatewayOut)
async def disable_gateway(gateway_id: ObjectId, gateways: Writer) -> GatewayOut:
    return gateway_out(await gateways.set_enabled(gateway_id, False), gateways)


@router.post("/gateways/{gateway_id}/test", response_model=ConnectionTestOut)
async def test_gateway(gateway_id: ObjectId, gateways: Writer) -> ConnectionTestOut:
    result = await gateways.test_connection(gateway_id)
    return ConnectionTestOut(
        ok=result.ok, message=result.message, latency_ms=result.latency_ms, tested_at=utcnow()
    )


@router.get("/gateways/{gateway_id}/versions", response_model=list[VersionOut])
async def list_versions(gateway_id: ObjectId, gateways: Reader) -> list[VersionOut]:
    """Newest first: every change made a version (an archived gateway keeps its versions)."""
    _, versions = await GatewayVersions(gateways).versions(gateway_id)
    return [VersionOut.of(v) for v in versions]


@router.get("/gateways/{gateway_id}/versions/{version}", response_model=GatewayVersionOut)
async def get_version(
    gateway_id: ObjectId, version: VersionNumber, gateways: Reader
) -> GatewayVersionOut:
    """The settings as they were after that change; secrets as masks only."""
    return gateway_version_out(await GatewayVersions(gateways).version(gateway_id, version))


@router.post("/gateways/{gateway_id}/versions/{version}/restore", response_model=GatewayRestored)
async def restore_version(
    gateway_id: ObjectId, version: VersionNumber, gateways: Writer
) -> GatewayRestored:
    """Put that version's settings back (recorded as a new version). Versions hold no
    secrets: the gateway keeps its current credentials."""
    restored = await GatewayVersions(gateways).restore(gateway_id, version)
    return GatewayRestored(
        **gateway_out(restored.target, gateways).model_dump(), **RestoreOut.fields_of(restored)
    )
