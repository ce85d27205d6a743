"""create_app(): routers, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from paygate.accounts.api_key_endpoints import router as api_keys_router
from paygate.accounts.endpoints import router as accounts_router
from paygate.accounts.member_endpoints import router as members_router
from paygate.accounts.session_endpoints import router as sessions_router
from paygate.db import Database, resolve_database_url
from paygate.gateways.endpoints import router as gateways_router
from paygate.invoices.endpoints import router as invoices_router
from paygate.jobs import start_worker_task
from paygate.kit.errors import install_problem_handlers, problem_media_types
from paygate.kit.logging import configure_logging
from paygate.kit.middleware import (
    BodyLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from paygate.migrations_check import current_revision, head_revision
from paygate.monitoring.endpoints import router as monitoring_router
from paygate.payments.endpoints import return_router as payment_return_router
from paygate.payments.endpoints import router as payments_router
from paygate.payments.list_endpoints import router as payments_list_router
from paygate.routing.endpoints import router as routing_router
from paygate.security.crypto import Keyring
from paygate.security.endpoints import keys_router as key_rotation_router
from paygate.security.endpoints import router as audit_router
from paygate.security.rate_limits import RateLimits
from paygate.security.revocation import RevocationList
from paygate.settings import Settings, get_settings
from paygate.web.pages import router as web_router
from paygate.web.render import templates
from paygate.webhooks.inbound.endpoints import receiver_router as webhook_receiver_router
from paygate.webhooks.inbound.endpoints import router as webhook_events_router
from paygate.webhooks.inbound.receive import GatewaysAsRead
from paygate.webhooks.outbound.endpoints import router as webhook_endpoints_router

STATIC_DIR = Path(__file__).parent / "web" / "static"


def _docs_page(request: Request) -> HTMLResponse:
    """Swagger UI from paygate's own static files (installed from npm by `make setup`), under
    the same Content-Security-Policy as every page: no CDN, no inline script."""
    return HTMLResponse(templates.get_template("api_docs.html").render())


def _document_problems_as_problem_json(app: FastAPI) -> None:
    """The OpenAPI document says error answers are application/problem+json, as they are."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_media_types(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(json_logs=settings.json_logs, level=settings.log_level)
    # Parse the keys before serving: a bad key configuration fails at start, not mid-request.
    keyring = Keyring.parse(settings.master_keys_text())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or Database(resolve_database_url(settings))
        app.state.database = db
        worker = start_worker_task(db, settings, keyring) if settings.run_worker else None
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
            if database is None:
                await db.dispose()
            await app.state.revocations.close()

    app = FastAPI(
        title="paygate",
        version="0.1.0",
        description="Multi-tenant payment gateway service. Errors are RFC 9457 problem+json.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.keyring = keyring
    app.state.rate_limits = RateLimits(settings)
    app.state.webhook_gateways = GatewaysAsRead()
    # One Redis client per app (when redis_url is set), closed by the lifespan.
    app.state.revocations = RevocationList.from_settings(settings)
    if database is not None:
        app.state.database = database
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        SecurityHeadersMiddleware,
        hsts=not settings.development,
        cors_origins=settings.cors_origins,
    )
    app.add_middleware(RequestContextMiddleware)

    # Routes are matched in order: the gateways' webhooks, the busiest unauthenticated
    # route, come first instead of after every API route.
    app.include_router(webhook_receiver_router)
    for router in (
        accounts_router,
        members_router,
        sessions_router,
        api_keys_router,
        gateways_router,
        invoices_router,
        payments_list_router,
        payments_router,
        payment_return_router,
        audit_router,
        key_rotation_router,
        monitoring_router,
        webhook_events_router,
        webhook_endpoints_router,
        routing_router,
    ):
        app.include_router(router)
    app.include_router(web_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    head = head_revision()

    app.add_api_route("/api/docs", _docs_page, include_in_schema=False, methods=["GET"])
    _document_problems_as_problem_json(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        db: Database = app.state.database
        try:
            async with db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                current = await current_revision(connection)
        except Exception:
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        if current != head:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": "ok",
                    "migrations": f"at {current}, head is {head}",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "database": "ok", "migrations": "current"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
