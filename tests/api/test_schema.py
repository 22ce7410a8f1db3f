"""The OpenAPI schema: generated warning-free, valid, with the shared errors and examples."""

from __future__ import annotations

from io import StringIO

import yaml
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator


def test_the_schema_generates_valid_and_without_a_single_warning(tmp_path, settings):
    import fleet.settings as configured

    # The contract is for the configured versions, whatever a session fixture allowed since.
    settings.FLEET_OPENCLAW_VERSIONS = list(configured.FLEET_OPENCLAW_VERSIONS)
    out = tmp_path / "schema.yaml"
    # --fail-on-warn raises on any warning or error; --validate checks it against OpenAPI 3.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(out), stderr=StringIO()
    )
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")


def _schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_api_operation_documents_the_errors_it_can_answer():
    schema = _schema()
    operations = [
        (path, method, op)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in item.items()
    ]
    assert len(operations) >= 25
    for path, method, op in operations:
        for code in ("400", "401", "403", "404", "429"):
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/Error", (path, method, code)
        assert "Retry-After" in op["responses"]["429"]["headers"]
        if method in ("post", "patch", "delete"):
            assert "409" in op["responses"], (path, method)
        if method == "post":
            names = [p["name"] for p in op.get("parameters", [])]
            assert "Idempotency-Key" in names, path


def test_the_main_calls_carry_examples():
    paths = _schema()["paths"]
    create = paths["/api/v1/instances"]["post"]
    assert "Deploy for a client" in {
        e["summary"]
        for e in create["requestBody"]["content"]["application/json"]["examples"].values()
    }
    assert "examples" in create["responses"]["202"]["content"]["application/json"]
    restart = paths["/api/v1/instances/{id}/restart"]["post"]
    assert restart["responses"]["202"]["content"]["application/json"]["examples"]
    assert restart["responses"]["409"]["content"]["application/json"]["examples"]


def test_secrets_are_write_only_in_the_schema():
    components = _schema()["components"]["schemas"]
    assert "api_key" in components["InstanceCreateRequest"]["properties"]
    for name, component in components.items():
        if name.endswith("Request"):
            continue
        props = component.get("properties", {})
        for secret in ("api_key", "provider_api_key", "gateway_token", "channel_token"):
            assert secret not in props, (name, secret)


def test_swagger_ui_and_the_schema_are_served(client):
    assert client.get("/api/docs/").status_code == 200
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200 and "/api/v1/instances" in response.json()["paths"]
