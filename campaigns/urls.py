from django.urls import URLPattern, re_path

from campaigns import api
from campaigns.compat.api import MoEngagePushView
from campaigns.mcp_server.http import McpView

# Paths take an optional trailing slash; ids are matched loosely and validated by
# the views so a malformed id gets INVALID_CAMPAIGN_ID, not a bare 404.
ID = r"(?P<campaign_id>[^/]+)"


def routes(prefix: str) -> list[URLPattern]:
    return [
        re_path(rf"^{prefix}/?$", api.CampaignListView.as_view()),
        re_path(rf"^{prefix}/test/?$", api.TestPushView.as_view()),
        re_path(rf"^{prefix}/{ID}/send/?$", api.CampaignSendView.as_view()),
        re_path(rf"^{prefix}/{ID}/cancel/?$", api.CampaignCancelView.as_view()),
        re_path(rf"^{prefix}/{ID}/deliveries/?$", api.CampaignDeliveriesView.as_view()),
        re_path(rf"^{prefix}/{ID}/runs/?$", api.CampaignRunsView.as_view()),
        re_path(rf"^{prefix}/{ID}/analytics/?$", api.CampaignAnalyticsView.as_view()),
        re_path(
            rf"^{prefix}/{ID}/runs/(?P<number>[^/]+)/analytics/?$", api.RunAnalyticsView.as_view()
        ),
        re_path(rf"^{prefix}/{ID}/push/?$", api.CampaignPushView.as_view()),
        re_path(rf"^{prefix}/{ID}/audience/?$", api.CampaignAudienceView.as_view()),
        re_path(rf"^{prefix}/{ID}/preview/?$", api.CampaignPreviewView.as_view()),
        re_path(rf"^{prefix}/{ID}/?$", api.CampaignDetailView.as_view()),
    ]


urlpatterns = [
    # The MCP server's streamable HTTP transport (campaigns/mcp_server/http.py).
    re_path(r"^mcp/?$", McpView.as_view()),
    *routes(r"admin/projects/(?P<project_id>[^/]+)/push/campaigns"),
    *routes(r"admin/push"),
    # Compatible front doors (campaigns/compat/; docs/api.md, "Compatible requests").
    re_path(
        r"^admin/projects/(?P<project_id>[^/]+)/compat/moengage/push/?$",
        MoEngagePushView.as_view(),
    ),
    re_path(r"^admin/compat/moengage/push/?$", MoEngagePushView.as_view()),
]
