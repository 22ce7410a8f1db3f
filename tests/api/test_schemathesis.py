"""Property-based tests of every operation against the generated OpenAPI schema (schemathesis,
in-process through the WSGI app): no 5xx, and every answer conforms to the schema (status code
documented, content type, body schema, headers).

Actions that would start containers only record an Operation: its task is enqueued with
transaction.on_commit, which never fires inside the test's transaction (and the `no_enqueue`
fixture fails the test if anything tries).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(autouse=True)
def _keep_the_test_connection(db):
    """Requests go through the WSGI app in-process. Like Django's test client, keep the test's
    database connection open across them (the request_started/finished signals would otherwise
    close it and lose the test's transaction)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def auth_headers(world, transcript_stub):
    return {"Authorization": f"Bearer {world.alice_secret}"}


def _load_schema():
    from fleet.wsgi import application

    # The schema as the app serves it (no database needed to generate it).
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


schema = _load_schema().include(path_regex=r"^/api/v1/")


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_conforms_to_the_schema_and_never_fails(case, auth_headers):
    case.call_and_validate(headers=auth_headers, checks=CHECKS)
