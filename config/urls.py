from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from rest_framework.permissions import AllowAny

from core.views import RedocView, SchemaView, SwaggerView, healthz, metrics, readyz

# The schema and its docs pages are public, like the API's contract they describe.
PUBLIC = {"authentication_classes": [], "permission_classes": [AllowAny]}

urlpatterns = [
    # The root (and the console's "View site" link) is the operator console.
    path("", RedirectView.as_view(url="/ops/", permanent=False)),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics),
    path("api/schema", SchemaView.as_view(**PUBLIC), name="schema"),
    path("api/docs", SwaggerView.as_view(url_name="schema", **PUBLIC), name="api-docs"),
    path("api/redoc", RedocView.as_view(url_name="schema", **PUBLIC), name="api-redoc"),
    path("ops/", admin.site.urls),
    path("", include("campaigns.urls")),
    path("", include("segments.urls")),
    path("", include("core.urls")),
    path("", include("delivery.urls")),
]

handler400 = "core.errors.handler400"
handler403 = "core.errors.handler403"
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
