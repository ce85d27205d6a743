"""The one error type: RFC 9457 problem details, answered as application/problem+json."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = structlog.get_logger(__name__)

PROBLEM_TYPE_BASE = "https://paygate.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


class Problem(Exception):
    """An error answer. `slug` becomes the stable problem `type` URI."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.headers = headers or {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [error.as_dict() for error in self.errors]
        return body


def not_found(what: str = "resource") -> Problem:
    return Problem(404, "not-found", "Not found", f"No such {what}.")


def validation_failed(errors: Sequence[FieldError], detail: str | None = None) -> Problem:
    return Problem(
        422,
        "validation-error",
        "Validation failed",
        detail or "; ".join(f"{e.field}: {e.message}" for e in errors),
        errors=errors,
    )


def unauthorized(detail: str = "Authentication is required.") -> Problem:
    return Problem(
        401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"}
    )


def forbidden(detail: str = "You do not have permission to do this.") -> Problem:
    return Problem(403, "forbidden", "Forbidden", detail)


def conflict(detail: str) -> Problem:
    return Problem(409, "conflict", "Conflict", detail)


def problem_response(problem: Problem, request: Request | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body(request.url.path if request else None),
        status_code=problem.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )


def _field_path(location: Sequence[Any]) -> str:
    # Drop the "body"/"query" part: clients want the field name they sent.
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def field_errors_from_pydantic(errors: Sequence[Any]) -> list[FieldError]:
    result = []
    for error in errors:
        message = str(error.get("msg", "is invalid"))
        # Pydantic echoes the input in some messages; we never do (it may be a secret).
        result.append(
            FieldError(_field_path(error.get("loc", ())), message, str(error.get("type")))
        )
    return result


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-error", "Validation failed"),
    429: ("rate-limited", "Too many requests"),
}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def handle_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def handle_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            problem = Problem(
                400, "malformed-json", "Malformed JSON", "The body is not valid JSON."
            )
        else:
            problem = validation_failed(field_errors_from_pydantic(errors))
        return problem_response(problem, request)

    @app.exception_handler(StarletteHTTPException)
    async def handle_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        detail: str | None = exc.detail if isinstance(exc.detail, str) else None
        if detail and detail.lower() == title.lower():
            detail = "No such route." if exc.status_code == 404 else None
        problem = Problem(exc.status_code, slug, title, detail, headers=dict(exc.headers or {}))
        return problem_response(problem, request)


class ProblemFieldErrorOut(BaseModel):
    field: str
    message: str
    code: str


class ProblemDetails(BaseModel):
    """An RFC 9457 problem as paygate answers it (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[ProblemFieldErrorOut] | None = None


# What any API route may answer besides its success: declared on every API router so the
# OpenAPI document lists every answer a client can get (and schemathesis can check them).
PROBLEM_STATUSES = (400, 401, 403, 404, 409, 413, 422, 429)
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ProblemDetails, "description": _STATUS_SLUGS[status][1]}
    for status in PROBLEM_STATUSES
}


def problem_media_types(document: dict[str, Any]) -> dict[str, Any]:
    """Error answers are application/problem+json: FastAPI writes every model as
    application/json, so move the error responses' schemas to the right media type."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in ("4", "5") and "application/json" in content:
                    content[PROBLEM_CONTENT_TYPE] = content.pop("application/json")
    return document


INTERNAL_ERROR = Problem(
    500,
    "internal-error",
    "Internal error",
    "Something went wrong. Quote the request id to support.",
)
