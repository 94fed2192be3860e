"""GET /metrics: who may read it, its envelope refusals, requests counted by route
pattern, and the batch histogram the send path publishes with."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from prometheus_client import CollectorRegistry

from core.metrics import BatchHistogram, route_label
from tests.scrape import parse, total, value

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0123456789"


@pytest.fixture
def token(settings) -> str:
    settings.HERALD_METRICS_TOKEN = TOKEN
    return TOKEN


def _user(*, staff: bool, superuser: bool = False) -> Client:
    user = get_user_model().objects.create_user(
        username=f"u-{uuid.uuid4().hex[:8]}",
        password="pw-123456789",
        is_staff=staff,
        is_superuser=superuser,
    )
    client = Client()
    client.force_login(user)
    return client


def test_without_credentials_the_answer_is_401_in_the_envelope(token):
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "UNAUTHENTICATED",
            "message": "Sign in as a superuser or send Authorization: Bearer <metrics token>.",
            "details": {},
        }
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="herald-metrics"'


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, "Bearer wrong"],
)
def test_a_wrong_token_is_401(token, header):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


def test_no_token_configured_means_no_token_is_accepted(settings):
    settings.HERALD_METRICS_TOKEN = ""
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 401


def test_an_api_key_is_not_a_metrics_token(token, api):
    response = api.client.get("/metrics")
    assert response.status_code == 401


def test_a_signed_in_user_who_is_not_staff_is_403():
    response = _user(staff=False).get("/metrics")
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "FORBIDDEN",
        "message": "Only superusers may read the metrics (they span every project).",
        "details": {},
    }


def test_the_token_reads_the_prometheus_text_format(token):
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = parse(response.content.decode())
    statuses = {dict(labels)["status"] for name, labels in samples if name == "herald_campaigns"}
    assert statuses == {"draft", "scheduled", "sending", "sent", "cancelled", "failed"}


def test_a_superuser_session_reads_the_metrics_and_other_staff_do_not():
    """The figures span every project; a project's members see only their projects."""
    refused = _user(staff=True).get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == (
        "Only superusers may read the metrics (they span every project)."
    )
    response = _user(staff=True, superuser=True).get("/metrics")
    assert response.status_code == 200
    assert b"# TYPE herald_campaigns gauge" in response.content


def test_only_get_is_allowed(token):
    response = Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert response["Allow"] == "GET"


def test_metrics_is_not_in_the_api_schema():
    response = Client().get("/api/schema?format=json")
    assert response.status_code == 200
    assert not [path for path in response.json()["paths"] if "metrics" in path]


def _scrape() -> dict:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return parse(response.content.decode())


def test_requests_are_counted_by_route_pattern_never_the_raw_path(token, api):
    campaign_id = uuid.uuid4()
    path = f"/admin/projects/{api.project.id}/push/campaigns/{campaign_id}"
    route = "/admin/projects/{project_id}/push/campaigns/{campaign_id}"
    name = "herald_http_requests_total"
    before = _scrape()
    assert api.client.get(path).status_code == 404
    assert api.client.get(path).status_code == 404
    assert Client().get("/no/such/page").status_code == 404
    after = _scrape()
    labels = {"method": "GET", "route": route, "status": "404"}
    assert value(after, name, **labels) - value(before, name, **labels) == 2
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert value(after, name, **unmatched) - value(before, name, **unmatched) == 1
    # The scrape before this one was counted too, by its route.
    assert value(after, name, method="GET", route="/metrics", status="200") >= 1
    routes = {dict(labels)["route"] for n, labels in after if n == name}
    assert not [r for r in routes if str(campaign_id) in r or str(api.project.id) in r]


def test_an_unknown_method_is_counted_as_other(token):
    before = _scrape()
    Client().generic("BREW", "/healthz")
    after = _scrape()
    labels = {"method": "other", "route": "/healthz", "status": "405"}
    name = "herald_http_requests_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 1
    assert total(after, name, method="BREW") == 0


@pytest.mark.parametrize(
    ("route", "label"),
    [
        (
            r"^admin/projects/(?P<project_id>[^/]+)/push/campaigns/(?P<campaign_id>[^/]+)/?$",
            "/admin/projects/{project_id}/push/campaigns/{campaign_id}",
        ),
        (r"^v1/projects/(?P<project_id>[^/]+)/tokens/(?P<token>(?:[^/]|\))+)/?$", None),
        ("ops/campaigns/pushcampaign/<path:object_id>/change/", None),
        ("healthz", "/healthz"),
        ("", "/"),
    ],
)
def test_route_labels_name_parameters(route, label):
    expected = (
        label
        or {
            r"^v1/projects/(?P<project_id>[^/]+)/tokens/(?P<token>(?:[^/]|\))+)/?$": (
                "/v1/projects/{project_id}/tokens/{token}"
            ),
            "ops/campaigns/pushcampaign/<path:object_id>/change/": (
                "/ops/campaigns/pushcampaign/{object_id}/change/"
            ),
        }[route]
    )
    assert route_label(route) == expected


def test_a_batch_of_observations_adds_what_observing_each_would():
    registry = CollectorRegistry()
    bounds = (0.01, 0.1, 1.0)
    one = BatchHistogram("t_one_seconds", "one at a time", buckets=bounds, registry=registry)
    batch = BatchHistogram("t_batch_seconds", "all at once", buckets=bounds, registry=registry)
    observations = [0.005, 0.01, 0.02, 0.5, 0.7, 3.0, 0.1]
    for seconds in observations:
        one.observe(seconds)
    counts = [2, 2, 2, 1]  # <=0.01, <=0.1, <=1, +Inf
    batch.observe_counts(counts, sum(observations))
    assert batch.bucket_bounds() == [0.01, 0.1, 1.0, float("inf")]

    def samples(name: str) -> list[tuple[str, dict[str, str], float]]:
        (family,) = [f for f in registry.collect() if f.name == name]
        suffixed = [(s.name[len(name) :], s.labels, s.value) for s in family.samples]
        return [sample for sample in suffixed if sample[0] != "_created"]

    assert samples("t_batch_seconds") == samples("t_one_seconds")
    with pytest.raises(ValueError, match="3 counts for 4 buckets"):
        batch.observe_counts([1, 2, 3], 1.0)
