"""The OpenAPI schema (/api/schema) is what clients generate SDKs from, so it must be
clean and say what the code does: the auth schemes, one error envelope, unique
operationIds. A drf-spectacular warning ("could not resolve authenticator", two
components named "Error", colliding operationIds) means a wrong or ambiguous
schema, so any warning fails here - the same check as
`manage.py spectacular --fail-on-warn --validate` (docs/api.md, "Schema").
"""

from __future__ import annotations

import json
import re
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
    assert set(schemes) == {"ApiKeyAuth", "ApiKeyBasicAuth", "StaffSession"}
    basic = schemes["ApiKeyBasicAuth"]  # the MoEngage door's only
    assert (basic["type"], basic["scheme"]) == ("http", "basic")
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


def test_the_moengage_door_takes_keys_only(schema: dict[str, Any]) -> None:
    """Its signature is checked with the raw key: Bearer or Basic, no staff session."""
    matched = [op for p, m, op in operations(schema) if "/compat/moengage/" in p]
    assert len(matched) == 2
    for operation in matched:
        assert operation["security"] == [{"ApiKeyBasicAuth": []}, {"ApiKeyAuth": []}]


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
    assert components["ProviderEnum"]["enum"] == ["apns", "fcm", "webpush"]
    assert components["PlatformEnum"]["enum"] == ["ios", "android", "web"]
    assert not [name for name in components if name.startswith(("Provider", "Platform"))][2:]


def test_served_schema_is_the_same(client: Any, schema: dict[str, Any]) -> None:
    """The running server loads the same extensions as the management command."""
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    served = json.loads(response.content)
    assert served["components"]["securitySchemes"] == schema["components"]["securitySchemes"]
    assert sorted(served["paths"]) == sorted(schema["paths"])


# --------------------------------------------------------------------------------------
# The schema says exactly what the server does (issue 9, item 7): ids, bounds, lengths,
# enums, nullability. Each of these was looser than the server before.

UUID_SCHEMA = {"type": "string", "format": "uuid"}
UUID_PATH_IDS = {"project_id", "campaign_id", "segment_id"}
LIST_ROUTES = [
    "/admin/projects/{project_id}/push/campaigns/",
    "/admin/projects/{project_id}/push/campaigns/{campaign_id}/deliveries/",
    "/admin/projects/{project_id}/segments/",
    "/admin/push/",
    "/admin/push/{campaign_id}/deliveries/",
    "/admin/projects/{project_id}/audit/",
]


def parameters(schema: dict[str, Any], path: str, method: str) -> dict[tuple[str, str], Any]:
    return {(p["in"], p["name"]): p for p in schema["paths"][path][method].get("parameters", [])}


def test_path_ids_are_uuids_and_a_malformed_id_keeps_its_documented_400(
    schema: dict[str, Any],
) -> None:
    seen = set()
    for path, method, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] in UUID_PATH_IDS:
                assert parameter["schema"] == UUID_SCHEMA, (method, path, parameter["name"])
                assert parameter["required"] is True
                seen.add(parameter["name"])
                if parameter["name"] != "project_id":
                    assert "400" in operation["responses"], (method, path)
    assert seen == UUID_PATH_IDS
    campaign = parameters(schema, "/admin/push/{campaign_id}/", "get")["path", "campaign_id"]
    assert "INVALID_CAMPAIGN_ID" in campaign["description"]


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_limit_and_cursor_are_bounded_as_parsed(schema: dict[str, Any], path: str) -> None:
    from core.pagination import DEFAULT_LIMIT, MAX_LIMIT

    found = parameters(schema, path, "get")
    assert found["query", "limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_LIMIT,
        "default": DEFAULT_LIMIT,
    }
    assert found["query", "cursor"]["schema"] == {"type": "string", "minLength": 1}


def test_filters_are_enums_and_the_run_is_bounded(schema: dict[str, Any]) -> None:
    campaigns = parameters(schema, "/admin/push/", "get")
    deliveries = parameters(schema, "/admin/push/{campaign_id}/deliveries/", "get")
    unregister = parameters(schema, "/v1/projects/{project_id}/tokens/{token}/", "delete")
    statuses = ["cancelled", "draft", "failed", "scheduled", "sending", "sent"]
    assert sorted(campaigns["query", "status"]["schema"]["enum"]) == statuses
    assert sorted(deliveries["query", "status"]["schema"]["enum"]) == [
        "failed", "invalid_token", "queued", "sent", "skipped", "unknown",
    ]  # fmt: skip
    assert deliveries["query", "run"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 2**31 - 1,
    }
    assert unregister["query", "provider"]["schema"] == {
        "type": "string",
        "enum": ["apns", "fcm", "webpush"],
    }
    assert unregister["path", "token"]["schema"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 512,
    }


def test_path_external_id_has_the_validators_shape(schema: dict[str, Any]) -> None:
    found = parameters(schema, "/v1/projects/{project_id}/users/{external_id}/", "put")
    external_id = found["path", "external_id"]["schema"]
    assert (external_id["minLength"], external_id["maxLength"]) == (1, 255)
    pattern = re.compile(external_id["pattern"])
    assert pattern.search("user-42") and pattern.search("élodie 7")
    for refused in (" ", "a\x01b", "a/b"):
        assert not pattern.search(refused), refused


def _text(schema: dict[str, Any], component: str, field: str) -> dict[str, Any]:
    return schema["components"]["schemas"][component]["properties"][field]


@pytest.mark.parametrize(
    ("component", "field", "max_length"),
    [
        ("CampaignWrite", "title", 500),
        ("CampaignWrite", "body", 4000),
        ("CampaignWrite", "name", 200),
        ("PatchedCampaignWrite", "title", 500),
        ("TestPushRequest", "title", 500),
        ("TestPushRequest", "device_token", 512),
        ("SegmentWrite", "name", 200),
        ("Action", "id", 64),
    ],
)
def test_required_texts_are_not_blank_and_bounded(
    schema: dict[str, Any], component: str, field: str, max_length: int
) -> None:
    """The validators refuse "" and "   " (MISSING_TITLE, MISSING_NAME ...)."""
    text = _text(schema, component, field)
    assert (text["type"], text["minLength"], text["maxLength"]) == ("string", 1, max_length)
    assert not re.search(text["pattern"], "   ") and re.search(text["pattern"], " a ")


def test_token_registration_documents_the_token_shape(schema: dict[str, Any]) -> None:
    token = _text(schema, "TokenWrite", "token")
    assert (token["minLength"], token["maxLength"]) == (64, 512)
    assert re.fullmatch(token["pattern"], "ab" * 32)
    assert not re.fullmatch(token["pattern"], "not a token" * 10)
    assert _text(schema, "TokenWrite", "provider") == {"$ref": "#/components/schemas/ProviderEnum"}
    assert _text(schema, "TokenWrite", "external_id")["maxLength"] == 255


def test_explicit_push_ids_are_typed_and_bounded(schema: dict[str, Any]) -> None:
    user_ids = _text(schema, "ExplicitPushRequest", "user_ids")
    assert user_ids["maxItems"] == 1000
    assert user_ids["items"]["type"] == "string"  # `user_ids: [0]` is 400
    assert (user_ids["items"]["minLength"], user_ids["items"]["maxLength"]) == (1, 255)
    device_ids = _text(schema, "ExplicitPushRequest", "device_ids")
    assert device_ids["items"]["oneOf"][1] == {"type": "integer", "minimum": 1}
    assert device_ids["items"]["oneOf"][0]["maxLength"] == 512


def test_segment_rules_are_an_object_never_null(schema: dict[str, Any]) -> None:
    for component in ("Segment", "SegmentWrite", "PatchedSegmentWrite", "RulesPreviewRequest"):
        rules = _text(schema, component, "rules")
        assert rules["type"] == "object", component
        assert "nullable" not in rules, component


def test_image_url_is_a_string_that_may_be_empty(schema: dict[str, Any]) -> None:
    """Campaigns without an image answer "", which `format: uri` refused."""
    answered = _text(schema, "Campaign", "image_url")
    assert answered["type"] == "string"
    assert "format" not in answered and "nullable" not in answered
    written = _text(schema, "CampaignWrite", "image_url")
    patterns = [branch.get("pattern") for branch in written["oneOf"]]
    assert [p for p in patterns if p] == [r"^(?:[Hh][Tt][Tt][Pp][Ss]?:[\s\S]+)?$"]
    assert re.search(patterns[0], "") and re.search(patterns[0], "https://x.test/a.png")
    assert not re.search(patterns[0], "ftp://x.test/a.png")


ANSWERS = [
    "Campaign", "Delivery", "Run", "Segment", "AppUser", "SampleUser", "Token", "Preview",
    "Audience", "TestPushResult", "ExplicitPushResult", "Action", "QuietHours", "Localization",
    "CampaignPreview", "AuditEvent",
]  # fmt: skip
NULLABLE = {
    "Campaign": {
        "segment_id", "scheduled_at", "badge", "ttl_seconds", "recurrence", "end_at",
        "quiet_hours", "throttle_per_minute", "fire_at", "sent_at", "completed_at",
    },
    "Delivery": {"app_user_id", "external_id", "sent_at"},
    "Run": {"completed_at"},
    "AuditEvent": {"project_id", "actor_user_id", "ip"},
    "Segment": {"member_count", "evaluated_at", "rules_error"},
    "AppUser": {"last_seen_at"},
    "Token": {"app_user_id", "external_id", "invalidated_at", "p256dh"},
    "TestPushResult": {"provider_message_id"},
    "ExplicitPushResult": {"run"},
    "Action": {"url", "icon"},
}  # fmt: skip


@pytest.mark.parametrize("component", ANSWERS)
def test_answers_are_typed_and_nullable_exactly_where_null_is_answered(
    schema: dict[str, Any], component: str
) -> None:
    """No property is "any value" (which includes null) in what the server answers."""
    properties = schema["components"]["schemas"][component]["properties"]
    for name, prop in properties.items():
        assert {"type", "$ref", "allOf", "oneOf"} & set(prop), (component, name)
    nullable = {name for name, prop in properties.items() if prop.get("nullable")}
    assert nullable == NULLABLE.get(component, set())


# --------------------------------------------------------------------------------------
# ... and the server refuses what the schema does not allow.


@pytest.fixture
def list_urls(api: Any) -> list[str]:
    from tests.factories import CampaignFactory

    campaign = CampaignFactory(project=api.project)
    project = f"/admin/projects/{api.project.id}"
    return [
        f"{project}/push/campaigns",
        f"{project}/push/campaigns/{campaign.id}/deliveries",
        f"{project}/segments",
        "/admin/push",
    ]


@pytest.mark.parametrize("parameter", ["limit", "cursor"])
@pytest.mark.django_db
def test_an_empty_page_parameter_is_refused(api: Any, list_urls: list[str], parameter: str) -> None:
    """`?limit=` answered the default page; the schema says an integer 1-200."""
    for url in list_urls:
        response = api.client.get(f"{url}?{parameter}=")
        assert response.status_code == 400, url
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        assert response.json()["error"]["details"] == {"field": parameter}


@pytest.mark.django_db
def test_an_empty_status_filter_is_refused(api: Any, list_urls: list[str]) -> None:
    for url in (list_urls[0], list_urls[1]):
        response = api.client.get(f"{url}?status=")
        assert response.status_code == 400, url
        assert response.json()["error"]["details"] == {"field": "status"}


@pytest.mark.django_db
def test_limit_beyond_four_digits_is_refused_not_a_crash(api: Any, list_urls: list[str]) -> None:
    for url in list_urls:
        response = api.client.get(url, {"limit": "9" * 5000})
        assert response.status_code == 400, url
        assert response.json()["error"]["details"] == {"field": "limit"}
