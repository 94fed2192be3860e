from django.urls import URLPattern, re_path

from segments import api

# Paths take an optional trailing slash; ids are matched loosely and validated by
# the views so a malformed id gets INVALID_SEGMENT_ID, not a bare 404.
SEGMENTS = r"admin/projects/(?P<project_id>[^/]+)/segments"
SEGMENT = rf"{SEGMENTS}/(?P<segment_id>[^/]+)"
V1 = r"v1/projects/(?P<project_id>[^/]+)"

urlpatterns: list[URLPattern] = [
    re_path(rf"^{SEGMENTS}/?$", api.SegmentListView.as_view()),
    re_path(rf"^{SEGMENTS}/preview/?$", api.RulesPreviewView.as_view()),
    re_path(rf"^{SEGMENT}/preview/?$", api.SegmentPreviewView.as_view()),
    re_path(rf"^{SEGMENT}/?$", api.SegmentDetailView.as_view()),
    re_path(rf"^{V1}/users/(?P<external_id>[^/]+)/?$", api.AppUserView.as_view()),
    re_path(rf"^{V1}/tokens/?$", api.TokenListView.as_view()),
    re_path(rf"^{V1}/events/?$", api.EventListView.as_view()),
    # Before the detail route, which would take "unregister" for a token.
    re_path(rf"^{V1}/tokens/unregister/?$", api.TokenUnregisterView.as_view()),
    re_path(rf"^{V1}/tokens/(?P<token>[^/]+)/?$", api.TokenDetailView.as_view()),
]
