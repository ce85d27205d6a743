"""paygate's own OpenAPI document, fuzzed with schemathesis (property-based API testing).

Stateless: every operation gets generated requests (valid and invalid), each answer checked
for server errors, a declared status code, a declared content type and a body that matches
the declared schema. Stateful: schemathesis chains operations through the links it infers
from the document (create a gateway, then read, update, enable, test, delete it ...).

Every call is made as a tenant owner (bearer token) in-process through the ASGI app on the
test database. Bounded and reproducible: few examples per operation, derandomized, no
shrinking phase, health checks that trip on a slow database suppressed.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.generation.modes import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from paygate.app import create_app
from paygate.settings import Settings
from tests.conftest import STRONG_PASSWORD

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# A deeper run by hand: PAYGATE_FUZZ_EXAMPLES=200 pytest tests/test_openapi_fuzz.py
EXAMPLES = int(os.environ.get("PAYGATE_FUZZ_EXAMPLES", "6"))

FUZZ_SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings) -> Any:
    """An app of its own: schemathesis runs it on its own event loop (lifespan included),
    so it opens its own database pool there instead of sharing the test loop's."""
    return create_app(settings)


@dataclass(frozen=True)
class Owner:
    """A tenant owner's bearer token, and a second session of theirs that sign-out may end
    (signing out the main session would turn every later call into a 401)."""

    headers: dict[str, str]
    spare_session: dict[str, str]

    def headers_for(self, case: Case) -> dict[str, str]:
        # A copy: schemathesis adds the headers it sent to the dict it is given.
        chosen = (
            self.spare_session if case.operation.path == "/api/v1/auth/logout" else self.headers
        )
        return dict(chosen)


def new_owner(fuzz_app: Any) -> Owner:
    """A company of its own: registered, then signed in a second time for the spare session."""
    credentials = {"email": f"fuzz-{secrets.token_hex(6)}@example.com", "password": STRONG_PASSWORD}
    with asgi.get_client(fuzz_app) as client:
        registered = client.post(
            "http://testserver/api/v1/auth/register",
            json={**credentials, "company_name": "Fuzz Co"},
        )
        assert registered.status_code == 201, registered.text
        signed_in = client.post("http://testserver/api/v1/auth/login", json=credentials)
        assert signed_in.status_code == 200, signed_in.text
    return Owner(
        headers={"Authorization": f"Bearer {registered.json()['access_token']}"},
        spare_session={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
    )


@pytest.fixture(scope="module")
def owner(fuzz_app: Any) -> Owner:
    return new_owner(fuzz_app)


def assert_owner_still_signed_in(fuzz_app: Any, owner: Owner) -> None:
    """Guards the run itself: answers after a lost session would all be 401s, testing little."""
    with asgi.get_client(fuzz_app) as client:
        me = client.get("http://testserver/api/v1/me", headers=owner.headers)
    assert me.status_code == 200, me.text


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Any) -> OpenApiSchema:
    return schemathesis.openapi.from_asgi("/api/openapi.json", fuzz_app)


# The default run takes about 25 s; a deeper one by hand needs more than the usual 120 s.
@pytest.mark.timeout(max(120, EXAMPLES * 20))
def test_every_operation_answers_within_its_declared_schema(
    fuzz_app: Any, api_schema: OpenApiSchema, owner: Owner
) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20  # the whole API, not an empty document
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ_SETTINGS
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Case) -> None:
                case.call_and_validate(headers=owner.headers_for(case), checks=CHECKS)

            try:
                call()
            except hypothesis.errors.Unsatisfiable:
                # No parameters and no body: nothing to make invalid in negative mode.
                assert mode is GenerationMode.NEGATIVE
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # every operation's failure is reported, not the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert failures == [], "\n\n".join(failures)
    assert_owner_still_signed_in(fuzz_app, owner)


@pytest.mark.timeout(max(120, EXAMPLES * 20))
def test_chained_operations_answer_within_their_declared_schema(
    fuzz_app: Any, api_schema: OpenApiSchema
) -> None:
    machine = api_schema.as_state_machine()

    class AsOwner(machine):  # type: ignore[valid-type,misc]
        # Each scenario starts from an empty company of its own. Hypothesis replays a
        # scenario's first draws in later ones, and a rule is only drawn when the answers
        # before it filled its bundle: rows left by an earlier scenario (a 409 for a name
        # taken, say) would change which rules exist and stop the run as flaky.
        scenario_owner: Owner

        def setup(self) -> None:
            self.scenario_owner = new_owner(fuzz_app)

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"headers": self.scenario_owner.headers_for(case)}

        def validate_response(self, response: Any, case: Case, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    AsOwner.run(
        settings=hypothesis.settings(
            FUZZ_SETTINGS,
            max_examples=EXAMPLES * 3,
            stateful_step_count=6,
        )
    )
