"""Web push VAPID keys over HTTP: generate or rotate (admin), read the public key (apps).

Thin views over core.services.project_generate_vapid and the project row. The
private key never leaves the server: neither answer carries it (docs/api.md,
"Web push VAPID keys").
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core import access
from core.api import ProjectScopedView, json_body
from core.errors import Conflict
from core.schema import error_responses
from core.services import project_generate_vapid

ERRORS = error_responses(400, 401, 403, 404, 429, 500)


class VapidGenerateSerializer(serializers.Serializer[object]):
    subject = serializers.CharField(
        max_length=200,
        help_text="mailto: address or https: URL push services may contact (RFC 8292).",
    )


class VapidKeysSerializer(serializers.Serializer[object]):
    public_key = serializers.CharField(
        help_text="base64url uncompressed P-256 point: pushManager.subscribe's "
        "applicationServerKey."
    )
    subject = serializers.CharField()
    rotated = serializers.BooleanField(
        help_text="True when keys existed: every existing subscription stops working."
    )


class VapidPublicKeySerializer(serializers.Serializer[object]):
    public_key = serializers.CharField(
        help_text="base64url uncompressed P-256 point: pushManager.subscribe's "
        "applicationServerKey."
    )


class VapidGenerateView(ProjectScopedView):
    failure_codes = {"POST": "VAPID_FAILED"}
    permissions = {"POST": access.CHANGE_PROJECT}

    @extend_schema(
        request=VapidGenerateSerializer,
        responses={200: VapidKeysSerializer, **ERRORS},
        summary="Generate (or rotate) the project's VAPID key pair for web push",
        description=(
            "Rotating breaks every existing web push subscription: browsers subscribed "
            "with the old public key must subscribe again. The private key is never "
            "returned."
        ),
    )
    def post(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        body = json_body(request, allowed=("subject",))
        project, rotated = project_generate_vapid(project=project, subject=body.get("subject"))
        return Response(
            VapidKeysSerializer(
                {
                    "public_key": project.webpush_vapid_public_key,
                    "subject": project.webpush_vapid_subject,
                    "rotated": rotated,
                }
            ).data
        )


class VapidPublicKeyView(ProjectScopedView):
    allow_client_keys = True
    failure_codes = {"GET": "FETCH_FAILED"}
    permissions = {"GET": access.REGISTER_DEVICES}

    @extend_schema(
        responses={200: VapidPublicKeySerializer, **ERRORS, **error_responses(409)},
        summary="The project's VAPID public key, for the app's pushManager.subscribe",
        description="409 VAPID_NOT_CONFIGURED until an operator generates the keys.",
    )
    def get(self, request: Request, **kwargs: Any) -> Response:
        project = self.project(request, kwargs)
        if not project.webpush_vapid_public_key:
            raise Conflict(
                "This project has no VAPID keys yet: an operator generates them "
                "(console or POST /admin/projects/{id}/webpush/vapid).",
                code="VAPID_NOT_CONFIGURED",
            )
        return Response(
            VapidPublicKeySerializer({"public_key": project.webpush_vapid_public_key}).data
        )
