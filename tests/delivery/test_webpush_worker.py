"""Herald's reference service worker (delivery/webpush_client/sw.js) in headless Chromium.

A page of a stand-in site (tests/delivery/webpush_site_urls.py, at http://localhost)
registers its copy of the worker with Herald's address (http://127.0.0.1, another
origin), a project and a client key. Pushes are payloads built by Herald's own builder
(delivery.payloads.build_webpush) for a real campaign and delivery, dispatched to the
worker as push events through the DevTools protocol (ServiceWorker.deliverPushMessage):
the real push services cannot be reached from here.

The click path: only the browser can fire a trusted `notificationclick` (a click on
the shown notification, which headless Chromium has no way to make), and a
script-built NotificationEvent cannot `waitUntil`. So the tests call the worker's own
listener, `heraldOnNotificationClick`, inside the worker (Playwright's Worker.evaluate)
with a stand-in event holding the real notification; the shipped file has no test
hook. Opening a window needs the user activation only a real click gives; where the
tests check which page the worker opens they record `clients.openWindow` /
`WindowClient.focus` in the worker's scope.

The shown notifications are read with registration.getNotifications() in the worker,
once the worker's own showNotification call has finished (Shop.register_worker counts
them): asked while Chromium is still showing one, getNotifications may answer without
it and keep doing so for seconds (seen from the page as well as from the worker).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone

from campaigns.content import campaign_content
from core.models import ApiKey, Project
from core.services import project_generate_vapid
from delivery.models import PushDelivery, PushToken
from delivery.payloads import Recipient, build_webpush, with_delivery_id
from segments.models import AppUser, Event
from tests.campaigns.engagement_helpers import sent_delivery
from tests.factories import CampaignFactory, create_api_key

pytestmark = [pytest.mark.browser, pytest.mark.urls("tests.delivery.webpush_site_urls")]

ACTIONS = [
    {"id": "buy", "title": "Buy now", "url": "https://shop.example/buy"},
    {"id": "later", "title": "Later"},
]


class Shop:
    """A page of the site with Herald's worker registered, and the DevTools session."""

    def __init__(self, context: Any, page: Any, site: str, herald: str) -> None:
        self.context = context
        self.page = page
        self.site = site
        self.herald = herald
        self.cdp = context.new_cdp_session(page)
        self.registrations: dict[str, str] = {}
        self.worker: Any = None
        self.pushes_to_show = 0
        self.cdp.on("ServiceWorker.workerRegistrationUpdated", self._registrations)
        self.cdp.send("ServiceWorker.enable")

    def _registrations(self, event: dict[str, Any]) -> None:
        for registration in event["registrations"]:
            self.registrations[registration["scopeURL"]] = registration["registrationId"]

    def register_worker(self, project: Project, key: str) -> Any:
        query = urlencode({"herald": self.herald, "project": str(project.id), "key": key})
        self.page.evaluate(
            """async (url) => {
                const registration = await navigator.serviceWorker.register(url);
                await navigator.serviceWorker.ready;
                return registration.scope;
            }""",
            f"/shop/herald-sw.js?{query}",
        )
        self._wait(lambda: self.site + "/shop/" in self.registrations, "the registration id")
        (self.worker,) = self.context.service_workers
        # Counts the notifications the worker's showNotification calls have shown (it
        # calls the browser's own): getNotifications asked while Chromium 156 is still
        # showing one may answer without it, and then keep doing so for seconds.
        self.worker.evaluate(
            """() => {
                self.testShown = 0;
                const show = ServiceWorkerRegistration.prototype.showNotification;
                ServiceWorkerRegistration.prototype.showNotification = async function (...args) {
                    await show.apply(this, args);
                    self.testShown += 1;
                };
            }"""
        )
        return self.worker

    def push(self, payload: dict[str, Any]) -> None:
        if "notification" in payload:
            self.pushes_to_show += 1
        self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": self.site,
                "registrationId": self.registrations[self.site + "/shop/"],
                "data": json.dumps(payload),
            },
        )

    def notifications(self) -> list[dict[str, Any]]:
        """registration.getNotifications(), asked in the worker."""
        return self.worker.evaluate(
            """async () => {
                return (await self.registration.getNotifications()).map((n) => ({
                    title: n.title, body: n.body, tag: n.tag, image: n.image,
                    actions: n.actions.map((a) => ({action: a.action, title: a.title})),
                    data: n.data,
                }));
            }"""
        )

    def wait_for_notifications(self, count: int) -> list[dict[str, Any]]:
        """The notifications shown, once the worker has shown every push sent so far."""
        self._wait(
            lambda: self.worker.evaluate("self.testShown") >= self.pushes_to_show,
            "the worker to show the push",
        )
        shown: list[dict[str, Any]] = []

        def enough() -> bool:
            shown[:] = self.notifications()
            return len(shown) >= count

        self._wait(enough, f"{count} notification(s)")
        return shown

    def _wait(self, condition: Any, what: str, seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {seconds}s for {what}")
            self.page.wait_for_timeout(50)  # lets Playwright deliver DevTools events


@pytest.fixture
def shop(browser: Any, live_server: Any, transactional_db: None) -> Any:
    site = live_server.url
    assert site.startswith("http://localhost:")
    herald = site.replace("localhost", "127.0.0.1")
    context = browser.new_context(locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(15_000)
    context.grant_permissions(["notifications"], origin=site)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site + "/shop/")
    try:
        yield Shop(context, page, site, herald)
        assert errors == []
    finally:
        context.close()


@pytest.fixture
def project() -> Project:
    return Project.objects.create(name="shop")


@pytest.fixture
def client_key(project: Project) -> str:
    return create_api_key(project, scope=ApiKey.Scope.CLIENT)[1]


def webpush_delivery(project: Project, **campaign: Any) -> tuple[PushDelivery, dict[str, Any]]:
    """A sent web push delivery of a new campaign and the JSON Herald pushed for it."""
    user = AppUser.objects.create(project=project, external_id="u-1")
    row = CampaignFactory(project=project, status="sent", **campaign)
    delivery = sent_delivery(
        row,
        sent_at=timezone.now() - timedelta(seconds=5),
        user=user,
        provider="webpush",
        platform="web",
    )
    payload, _headers = build_webpush(
        campaign_content(row), Recipient(platform="web"), now=timezone.now()
    )
    return delivery, with_delivery_id("webpush", payload, str(delivery.pk))


def click(worker: Any, action: str = "", record_windows: bool = True) -> list[dict[str, Any]]:
    """`heraldOnNotificationClick` on the first shown notification; what its waitUntil
    promise settled to (the report, then the window)."""
    return worker.evaluate(
        """async ([action, recordWindows]) => {
            if (recordWindows) {
                self.opened = [];
                self.clients.openWindow = async (url) => { self.opened.push(["open", url]); };
                WindowClient.prototype.focus = async function () {
                    self.opened.push(["focus", this.url]);
                };
            }
            const [notification] = await self.registration.getNotifications();
            const waits = [];
            heraldOnNotificationClick({notification, action, waitUntil: (p) => waits.push(p)});
            const settled = (await Promise.all(waits)).flat();
            return settled.map((s) => ({status: s.status, reason: s.reason && String(s.reason)}));
        }""",
        [action, record_windows],
    )


def stored_events(project: Project) -> list[tuple[str, str, int | None, str]]:
    return list(
        Event.objects.filter(project=project)
        .order_by("id")
        .values_list("event_id", "name", "delivery_id", "action_id")
    )


def test_a_push_shows_the_notification_herald_built(
    shop: Shop, project: Project, client_key: str
) -> None:
    delivery, payload = webpush_delivery(
        project,
        title="Spring sale",
        body="20% off",
        url="https://shop.example/sale",
        actions=ACTIONS,
        collapse_key="spring",
        data={"screen": "sale", "n": 3},
    )
    shop.register_worker(project, client_key)
    shop.push(payload)

    (shown,) = shop.wait_for_notifications(1)
    assert shown == {
        "title": "Spring sale",
        "body": "20% off",
        "tag": "spring",
        "image": "",
        "actions": [
            {"action": "buy", "title": "Buy now"},
            {"action": "later", "title": "Later"},
        ],
        "data": {
            "herald": {
                "url": "https://shop.example/sale",
                "action_urls": {"buy": "https://shop.example/buy"},
                "data": {"screen": "sale", "n": 3},
                "campaign_id": str(delivery.campaign_id),
                "delivery_id": str(delivery.pk),
            }
        },
    }


def test_clicks_report_opened_and_clicked_once_and_open_the_right_page(
    shop: Shop, project: Project, client_key: str
) -> None:
    delivery, payload = webpush_delivery(
        project, title="Sale", body="Now", url="https://shop.example/sale", actions=ACTIONS
    )
    worker = shop.register_worker(project, client_key)
    fulfilled = [{"status": "fulfilled", "reason": None}] * 2

    shop.push(payload)
    shop.wait_for_notifications(1)
    assert click(worker, "buy") == fulfilled  # the button with its own page
    assert shop.notifications() == []  # closed by the click
    assert worker.evaluate("self.opened") == [["open", "https://shop.example/buy"]]

    shop.push(payload)
    shop.wait_for_notifications(1)
    assert click(worker, "later") == fulfilled  # a button without a page: the push's url
    assert worker.evaluate("self.opened") == [["open", "https://shop.example/sale"]]

    shop.push(payload)
    shop.wait_for_notifications(1)
    assert click(worker) == fulfilled  # the body
    assert worker.evaluate("self.opened") == [["open", "https://shop.example/sale"]]

    shop.push(payload)  # the same push shown and clicked again: the same event ids
    shop.wait_for_notifications(1)
    assert click(worker) == fulfilled
    assert click_ids(delivery) == stored_events(project)


def click_ids(delivery: PushDelivery) -> list[tuple[str, str, int | None, str]]:
    d = delivery.pk
    return [
        (f"wp:{d}:push_clicked:buy", "push_clicked", d, "buy"),
        (f"wp:{d}:push_clicked:later", "push_clicked", d, "later"),
        (f"wp:{d}:push_opened", "push_opened", d, ""),
    ]


def test_a_click_focuses_a_window_already_on_the_page(
    shop: Shop, project: Project, client_key: str
) -> None:
    _delivery, payload = webpush_delivery(
        project, title="Sale", body="Now", url=shop.site + "/shop/"
    )
    worker = shop.register_worker(project, client_key)
    shop.push(payload)
    shop.wait_for_notifications(1)
    click(worker)
    assert worker.evaluate("self.opened") == [["focus", shop.site + "/shop/"]]


def test_a_failed_window_does_not_stop_the_report(
    shop: Shop, project: Project, client_key: str
) -> None:
    """Without the recorder the browser refuses the window (no real click); the report
    still reaches Herald. A long action id gets a hashed event id of 64 characters."""
    action = "a" * 64
    delivery, payload = webpush_delivery(
        project,
        title="Sale",
        body="Now",
        url="https://shop.example/sale",
        actions=[{"id": action, "title": "Go"}],
    )
    worker = shop.register_worker(project, client_key)
    shop.push(payload)
    shop.wait_for_notifications(1)
    report, window = click(worker, action, record_windows=False)
    assert report == {"status": "fulfilled", "reason": None}
    assert window["status"] == "rejected"
    assert "Not allowed to open a window" in window["reason"]
    ((event_id, name, delivery_id, action_id),) = stored_events(project)
    assert (name, delivery_id, action_id) == ("push_clicked", delivery.pk, action)
    assert len(event_id) == 64 and set(event_id) <= set("0123456789abcdef")


def test_a_refused_report_does_not_stop_the_window(shop: Shop, project: Project) -> None:
    """A revoked key: Herald answers 401 (readable cross-origin: the envelope, not a
    CORS failure), the worker does not retry it, and the page still opens."""
    _key, raw = create_api_key(project, scope=ApiKey.Scope.CLIENT, revoked=True)
    _delivery, payload = webpush_delivery(
        project, title="Sale", body="Now", url="https://shop.example/sale"
    )
    worker = shop.register_worker(project, raw)
    shop.push(payload)
    shop.wait_for_notifications(1)
    report, window = click(worker)
    assert report["status"] == "rejected"
    assert "(HTTP 401)" in report["reason"]
    assert window == {"status": "fulfilled", "reason": None}
    assert worker.evaluate("self.opened") == [["open", "https://shop.example/sale"]]
    assert stored_events(project) == []


def test_a_silent_push_shows_nothing_and_reaches_open_windows(
    shop: Shop, project: Project, client_key: str
) -> None:
    _delivery, payload = webpush_delivery(
        project, title="Sync", body="-", silent=True, data={"sync": "inbox"}
    )
    assert payload["silent"] is True and "notification" not in payload
    shop.register_worker(project, client_key)
    shop.push(payload)
    shop._wait(lambda: shop.page.evaluate("window.heraldMessages.length") == 1, "the message")
    assert shop.page.evaluate("window.heraldMessages") == [
        {"type": "herald-push", "payload": payload}
    ]
    assert shop.notifications() == []
    assert stored_events(project) == []


def subscription_json() -> dict[str, Any]:
    """What PushSubscription.toJSON() gives (a fresh P-256 key, a 16-byte secret)."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {
        "endpoint": "https://push.example.test/send/abc",
        "expirationTime": None,
        "keys": {"p256dh": b64(point), "auth": b64(bytes(range(16)))},
    }


def test_the_page_helper_reads_the_vapid_key_and_registers_a_subscription(
    shop: Shop, project: Project, client_key: str
) -> None:
    """herald-webpush.js loaded from Herald into the site's page, calling Herald
    cross-origin. pushManager.subscribe itself needs a push service this machine cannot
    reach, so subscribe()'s last steps are the two calls tested here."""
    project, _rotated = project_generate_vapid(project=project, subject="mailto:ops@example.com")
    shop.page.add_script_tag(url=shop.herald + "/webpush/herald-webpush.js")
    config = {"herald": shop.herald + "/", "project": str(project.id), "key": client_key}
    subscription = subscription_json()
    answer = shop.page.evaluate(
        """async ([config, subscription]) => [
            await HeraldWebPush.vapidPublicKey(config),
            await HeraldWebPush.registerSubscription(config, subscription, "u-7"),
        ]""",
        [config, subscription],
    )
    key, token = answer
    assert key == project.webpush_vapid_public_key
    assert (token["token"], token["provider"], token["platform"]) == (
        subscription["endpoint"],
        "webpush",
        "web",
    )
    stored = PushToken.objects.select_related("app_user").get(project=project)
    assert stored.app_user is not None
    assert (stored.token, stored.app_user.external_id) == (subscription["endpoint"], "u-7")

    refused = shop.page.evaluate(
        """async (config) => {
            try { await HeraldWebPush.registerSubscription(config, {endpoint: "http://x"}); }
            catch (error) { return String(error); }
        }""",
        config,
    )
    assert refused.startswith("Error: Herald POST /tokens: 400 INVALID_SUBSCRIPTION")
    assert PushToken.objects.filter(project=project).count() == 1
