"""The webhook endpoint forms: the posted fields, as the values a page shows again and the
API's shapes are built from, and a refusal's errors back next to the fields they belong
to. No rule lives here: webhooks/outbound/schemas.py and service.py decide what is valid."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from paygate.kit.errors import Problem
from paygate.web.forms import FormErrors, text, texts
from paygate.webhooks.outbound.models import WebhookEndpoint

FIELDS = ["url", "description", "event_types", "enabled", "secret"]
LABELS = {"url": "URL", "description": "Description", "event_types": "Events"}


def form_values(form: FormData | None, endpoint: WebhookEndpoint | None = None) -> dict[str, Any]:
    if form is not None:
        return {
            "url": text(form, "url").strip(),
            "description": text(form, "description").strip(),
            "event_types": texts(form, "event_types"),
            "enabled": text(form, "enabled") == "on",
        }
    if endpoint is not None:
        return {
            "url": endpoint.url,
            "description": endpoint.description or "",
            "event_types": list(endpoint.event_types),
            "enabled": endpoint.enabled,
        }
    return {"url": "", "description": "", "event_types": [], "enabled": True}


def form_errors(problem: Problem) -> FormErrors:
    errors = FormErrors.from_problem(problem, FIELDS, labels=LABELS)
    # "event_types.2" (an unknown type) belongs next to the checkboxes.
    for message in list(errors.general):
        if message.lower().startswith(("event_types", "events")):
            errors.general.remove(message)
            errors.fields.setdefault("event_types", []).append(message)
    return errors
