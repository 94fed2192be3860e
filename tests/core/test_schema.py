"""The OpenAPI schema (/api/schema) is what clients generate SDKs from, so it must be
clean and say what the code does: the auth schemes, one error envelope, unique
operationIds. A drf-spectacular warning ("could not resolve authenticator", two
components named "Error", colliding operationIds) means a wrong or ambiguous
schema, so any warning fails here - the same check as
`manage.py spectacular --fail-on-warn --validate` (docs/api.md, "Schema").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}
SECURITY: list[dict[str, list[str]]] = [{"ApiKeyAuth": []}, {"StaffSession": []}]
API_PREFIXES = [
    "/admin/projects/{project_id}/push/campaigns",
    "/admin/push",
    "/admin/projects/{project_id}/segments",
    "/v1/",
]
ERROR_REF = {"$ref": "#/components/schemas/Error"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The schema as the `spectacular` command builds it (public, no request)."""
    GENERATOR_STATS.reset()
    generated = SchemaGenerator().get_schema(request=None, public=True)
    GENERATOR_STATS.reset()
    # Through the renderer, as served: plain JSON types only.
    result: dict[str, Any] = json.loads(json.dumps(generated, default=str))
    return result


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_spectacular_command_has_no_warnings_and_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    GENERATOR_STATS.reset()
    out = tmp_path / "openapi.json"
    try:
        call_command(
            "spectacular", "--fail-on-warn", "--validate", "--format", "openapi-json",
            "--file", str(out),
        )  # fmt: skip
    except Exception as exc:  # SchemaGenerationError / SchemaValidationError
        pytest.fail(f"{type(exc).__name__}: {exc}\n{capsys.readouterr().err}")
    finally:
        GENERATOR_STATS.reset()
    assert capsys.readouterr().err == ""
    validate_schema(json.loads(out.read_text()))


def test_security_schemes_describe_api_keys_and_staff_sessions(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert set(schemes) == {"ApiKeyAuth", "StaffSession"}
    api_key = schemes["ApiKeyAuth"]
    assert (api_key["type"], api_key["scheme"]) == ("http", "bearer")
    assert api_key["bearerFormat"] == "hk_<prefix>_<secret>"
    assert "client" in api_key["description"]
    session = schemes["StaffSession"]
    assert (session["type"], session["in"], session["name"]) == ("apiKey", "cookie", "sessionid")
    assert "X-CSRFTOKEN" in session["description"].upper()


@pytest.mark.parametrize("prefix", API_PREFIXES)
def test_every_api_operation_requires_a_key_or_staff_session(
    schema: dict[str, Any], prefix: str
) -> None:
    matched = [(p, m, op) for p, m, op in operations(schema) if p.startswith(prefix)]
    assert matched
    for path, method, operation in matched:
        assert operation.get("security") == SECURITY, (method, path)


def test_one_error_envelope_component(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert [name for name in components if name.startswith("Error")] == ["Error", "ErrorBody"]
    assert components["Error"]["required"] == ["error"]
    assert components["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    body = components["ErrorBody"]
    assert sorted(body["required"]) == ["code", "details", "message"]
    assert set(body["properties"]) == {"code", "message", "details"}
    assert body["properties"]["code"]["type"] == "string"
    assert body["properties"]["code"]["pattern"] == "^[A-Z][A-Z0-9_]*$"
    assert body["properties"]["message"]["type"] == "string"
    assert body["properties"]["details"]["type"] == "object"


def test_every_error_response_is_the_envelope(schema: dict[str, Any]) -> None:
    seen = 0
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                seen += 1
                content = response["content"]["application/json"]["schema"]
                assert content == ERROR_REF, (method, path, status)
    assert seen > 0


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/admin/projects/{project_id}/push/campaigns/", "post", "400"),
        ("/admin/projects/{project_id}/push/campaigns/{campaign_id}/", "patch", "409"),
        ("/admin/projects/{project_id}/push/campaigns/{campaign_id}/", "patch", "502"),
        ("/admin/projects/{project_id}/push/campaigns/{campaign_id}/push/", "post", "413"),
        ("/admin/projects/{project_id}/push/campaigns/{campaign_id}/send/", "post", "500"),
        ("/admin/projects/{project_id}/push/campaigns/test/", "post", "502"),
        ("/admin/projects/{project_id}/segments/{segment_id}/", "delete", "409"),
        ("/v1/projects/{project_id}/tokens/", "post", "403"),
        ("/admin/push/", "get", "401"),
    ],
)
def test_documented_error_responses_are_kept(
    schema: dict[str, Any], path: str, method: str, status: str
) -> None:
    assert status in schema["paths"][path][method]["responses"]


def test_operation_ids_are_unique_and_name_the_operation(schema: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(schema)]
    assert len(ids) == len(set(ids))
    by_route = {(m, p): op["operationId"] for p, m, op in operations(schema)}
    campaigns = "/admin/projects/{project_id}/push/campaigns/"
    segments = "/admin/projects/{project_id}/segments/"
    assert by_route["get", campaigns] == "admin_projects_push_campaigns_list"
    assert by_route["get", campaigns + "{campaign_id}/"] == "admin_projects_push_campaigns_retrieve"
    assert by_route["get", "/admin/push/"] == "admin_push_list"
    assert by_route["get", "/admin/push/{campaign_id}/"] == "admin_push_retrieve"
    assert by_route["get", segments] == "admin_projects_segments_list"
    assert by_route["get", segments + "{segment_id}/"] == "admin_projects_segments_retrieve"
    assert by_route["post", segments + "{segment_id}/preview/"] == "admin_projects_segments_preview"
    assert by_route["post", segments + "preview/"] == "admin_projects_segments_preview_rules"


def test_provider_and_platform_enums_are_the_model_choices(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["ProviderEnum"]["enum"] == ["apns", "fcm"]
    assert components["PlatformEnum"]["enum"] == ["ios", "android", "web"]
    assert not [name for name in components if name.startswith(("Provider", "Platform"))][2:]


def test_served_schema_is_the_same(client: Any, schema: dict[str, Any]) -> None:
    """The running server loads the same extensions as the management command."""
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    served = json.loads(response.content)
    assert served["components"]["securitySchemes"] == schema["components"]["securitySchemes"]
    assert sorted(served["paths"]) == sorted(schema["paths"])
