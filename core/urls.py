from django.urls import URLPattern, re_path

from core import audit_api, webpush_api

PROJECT = r"projects/(?P<project_id>[^/]+)"

urlpatterns: list[URLPattern] = [
    re_path(rf"^admin/{PROJECT}/audit/?$", audit_api.AuditEventListView.as_view()),
    re_path(rf"^admin/{PROJECT}/webpush/vapid/?$", webpush_api.VapidGenerateView.as_view()),
    re_path(
        rf"^v1/{PROJECT}/webpush/vapid-public-key/?$", webpush_api.VapidPublicKeyView.as_view()
    ),
]
