"""What the OpenAPI schema (/api/schema, drf-spectacular) needs to know from core.

drf-spectacular cannot read auth rules or our error envelope from the code, so this
module states them once: the two security schemes (API key, staff session), the one
`Error` component every error response refers to, operationIds that tell a list
from a detail, UUID path ids, the bounded pagination parameters, and
`DocumentedJSONField` for JSON columns answered as stored. The schema must say what
the validators accept (docs/decisions.md); `make schema-check` holds it to that.
Extensions register themselves when their class is created, so
`CoreConfig.ready()` imports this module - the place drf-spectacular's docs give for
extensions - and the schema view and `manage.py spectacular` both see them.
tests/core/test_schema.py fails on any generator warning.
"""

from __future__ import annotations

from typing import Any, cast

import uritemplate
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from core.models import KEY_PREFIX

# A string with at least one non-space character: what "must not be blank" means to
# the validators (`str.strip()`), as a JSON Schema pattern (searched, not anchored).
NOT_BLANK = r"\S"

# Path ids are matched loosely by the URLs ([^/]+) so that a malformed id gets its
# own 400 code from the view instead of a bare 404; the schema says what is valid.
UUID_PATH_PARAMETERS = {
    "project_id": "The project's id (a key's own project; any other id answers 404).",
    "campaign_id": "A campaign id; not a UUID: 400 INVALID_CAMPAIGN_ID.",
    "segment_id": "A segment id; not a UUID: 400 INVALID_SEGMENT_ID.",
}


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": f"{KEY_PREFIX}<prefix>_<secret>",
            "description": (
                f"`Authorization: Bearer {KEY_PREFIX}<prefix>_<secret>`, a project API key "
                "(shown once, by `create_project` or the admin). An admin-scoped key may "
                "call every operation of its project; a read-only key only the reads; a "
                "client-scoped key (shipped inside apps) only the device registration API "
                "under /v1/; anything else 403 FORBIDDEN (`details.permission` names what "
                "was missing). A key used on another project's URL gets 404 NOT_FOUND; a "
                "missing or invalid key 401 UNAUTHENTICATED."
            ),
        }


class BasicApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.BasicApiKeyAuthentication"
    name = "ApiKeyBasicAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": (
                "MoEngage-style Basic auth, on the MoEngage door only: username the "
                "project id, password an admin API key."
            ),
        }


class StaffSessionScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.StaffSessionAuthentication"
    name = "StaffSession"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        # Django names the header as a WSGI key: HTTP_X_CSRFTOKEN is X-CSRFToken.
        csrf_header = settings.CSRF_HEADER_NAME.removeprefix("HTTP_").replace("_", "-")
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": (
                "The session cookie of a logged-in staff user (the operator console at "
                "/ops/). Unsafe methods (POST, PUT, PATCH, DELETE) also need the "
                f"`{settings.CSRF_COOKIE_NAME}` cookie's value in the `{csrf_header}` header. "
                "Alias routes (/admin/push...) take the project as `?project_id=<uuid>`."
            ),
        }


class DocumentedJSONField(serializers.JSONField):
    """A stored JSON value, answered as it is and documented with `schema`.

    Output fields of JSON columns (a campaign's actions, a segment's rules) are
    passed through unchanged - re-serializing them could reshape or fail on a stored
    value - but clients need their shape, not "any value". `schema` is a raw schema
    dict or a serializer that describes it; nullable only with allow_null=True.
    """

    def __init__(
        self, schema: dict[str, Any] | serializers.Field[Any, Any, Any, Any], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        # On the instance, re-applied by every copy DRF makes of a declared field.
        extend_schema_field(schema)(cast(Any, self))


class ErrorBodySerializer(serializers.Serializer[object]):
    code = serializers.RegexField(
        r"^[A-Z][A-Z0-9_]*$", help_text="Stable, UPPER_SNAKE; clients branch on this."
    )
    message = serializers.CharField(help_text="Human text; may change between versions.")
    details = serializers.DictField(
        help_text="Context such as the offending `field`; `{}` when there is none."
    )


class ErrorSerializer(serializers.Serializer[object]):
    """Documents `core.errors.envelope`, the one shape of every error (DESIGN.md).

    Only for the schema: errors are rendered by core.errors, never through this class.
    """

    error = ErrorBodySerializer()


ERROR_DESCRIPTIONS = {
    400: "Invalid input; `code` names the problem, `details.field` the field.",
    401: "UNAUTHENTICATED: no or invalid API key / session.",
    403: (
        "FORBIDDEN: the key's scope (client, read-only) or the staff user's role in the "
        "project does not hold the operation's permission (`details.permission`)."
    ),
    404: "NOT_FOUND (also for another project's id).",
    409: (
        "The resource's state does not allow it (the message names the state), or "
        "IDEMPOTENCY_KEY_IN_USE: a request with this Idempotency-Key is still running."
    ),
    413: "Too large (TOO_MANY_DEVICES, REQUEST_TOO_LARGE).",
    422: "IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was used for a different request.",
    429: "RATE_LIMITED; wait `Retry-After` seconds (also in `details.retry_after`).",
    500: "The operation failed (`*_FAILED`, named per operation); no stack trace.",
    502: "A dependency (broker, provider) refused; the change was rolled back.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """`extend_schema(responses=...)` entries: the envelope for each HTTP status."""
    return {
        status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
        for status in statuses
    }


class HeraldAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema: list operations named `<path>_list`, UUID path ids.

    drf-spectacular recognises a list by a `many=True` response; ours answer a page
    envelope `{"results", "next"}`, so a list and a detail GET on the same path
    prefix would both be `<path>_retrieve` and collide. Views whose GET answers a
    list set `lists = True`.
    """

    def get_override_parameters(self) -> list[Any]:
        """The view's own parameters, plus UUID typing for the id path variables."""
        declared = list(super().get_override_parameters())
        named = {p.name for p in declared if isinstance(p, OpenApiParameter)}
        variables = uritemplate.variables(self.path)
        return [
            *(
                OpenApiParameter(
                    name, OpenApiTypes.UUID, OpenApiParameter.PATH, description=description
                )
                for name, description in UUID_PATH_PARAMETERS.items()
                if name in variables and name not in named
            ),
            *declared,
        ]

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if self.method == "GET" and getattr(self.view, "lists", False):
            base, sep, action = operation_id.rpartition("_")
            if sep and action in ("retrieve", "list"):
                return f"{base}_list"
        return operation_id
