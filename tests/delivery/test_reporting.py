"""The simulators' device behaviour (delivery/simulators/reporting.py).

The reporter posts to a small aiohttp server that stands in for Herald's events API
over real HTTP (it answers like the API: accepted / duplicates by ``event_id``, or
the failures a test queues); payloads are built by delivery/payloads.py, plus the
``herald_delivery_id`` key the contract adds. Deadlines are generous ceilings for a
loaded machine, not timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from core.credentials import generate_vapid_key_pair
from delivery.payloads import (
    Action,
    PushContent,
    Recipient,
    build_apns,
    build_fcm,
    build_webpush,
    webpush_headers,
)
from delivery.providers.apns import ApnsSender
from delivery.providers.base import ApnsConfig, FcmConfig, OutgoingPush, WebPushConfig
from delivery.providers.fcm import FcmSender
from delivery.providers.webpush import WebPushSender
from delivery.simulators.cli import reporting_from_options
from delivery.simulators.reporting import (
    API_KEY_ENV,
    DELIVERY_ID_KEY,
    DeviceReporter,
    ReceivedPush,
    ReportingConfig,
    plan_events,
    read_push,
)
from delivery.simulators.server import SimulatorServer
from tests.delivery.conftest import apns_token, fcm_token, send_with

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KEY = "hk_0123456789ab_device-behaviour-test-key"
DEADLINE = 60.0
BUTTONS = (Action("try", "Try it"), Action("later", "Later"))
ALWAYS = {"open_share": 1, "click_share": 1, "goal_share": 1}
NO_DELAY = {"delay_min_seconds": 0, "delay_max_seconds": 0, "flush_seconds": 0.05}


def apns_body(delivery_id: int | None, *, actions: tuple[Action, ...] = BUTTONS) -> bytes:
    payload, _ = build_apns(PushContent("Hi", "there", actions=actions), Recipient(), now=NOW)
    if delivery_id is not None:
        payload[DELIVERY_ID_KEY] = str(delivery_id)
    return json.dumps(payload).encode()


def fcm_message(delivery_id: int | None, *, actions: tuple[Action, ...] = BUTTONS) -> dict:
    content = PushContent("Hi", "there", actions=actions)
    message = build_fcm(content, Recipient(platform="android"), now=NOW)
    if delivery_id is not None:
        message.setdefault("data", {})[DELIVERY_ID_KEY] = str(delivery_id)
    return message


def web_payload(
    delivery_id: int | None, *, actions: tuple[Action, ...] = BUTTONS, silent: bool = False
) -> dict:
    """The JSON a browser decrypts (build_webpush plus the delivery id the sender adds)."""
    content = PushContent("Hi", "there", actions=actions, silent=silent)
    payload, _ = build_webpush(content, Recipient(platform="web"), now=NOW)
    if delivery_id is not None:
        payload[DELIVERY_ID_KEY] = str(delivery_id)
    return payload


def config(**knobs: Any) -> ReportingConfig:
    return ReportingConfig().updated({"url": "http://127.0.0.1:9/events", "api_key": KEY, **knobs})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Recorder:
    """Herald's events API as far as the reporter can tell, over real HTTP."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[dict[str, Any]]]] = []  # (Authorization, events)
        self.stored: dict[str, dict[str, Any]] = {}
        self.fail_with: list[int] = []  # statuses to answer first, in order
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/projects/p/events"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/v1/projects/p/events", self.events)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def events(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.headers.get("Authorization", ""), body["events"]))
        if self.fail_with:
            status = self.fail_with.pop(0)
            error = {"code": "SOMETHING", "message": f"status {status}", "details": {}}
            return web.json_response({"error": error}, status=status, headers={"Retry-After": "0"})
        accepted = duplicates = 0
        for event in body["events"]:
            if event["event_id"] in self.stored:
                duplicates += 1
            else:
                self.stored[event["event_id"]] = event
                accepted += 1
        return web.json_response({"accepted": accepted, "duplicates": duplicates, "rejected": []})


@contextlib.asynccontextmanager
async def running(reporter: DeviceReporter) -> AsyncIterator[DeviceReporter]:
    reporter.start()
    try:
        yield reporter
    finally:
        await reporter.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def expected_events(delivery_ids: list[int], cfg: ReportingConfig, seed: int) -> dict[str, dict]:
    """What plan_events says these pushes lead to (occurred_at aside), by event id."""
    planned = {}
    for delivery_id in delivery_ids:
        push = ReceivedPush(delivery_id, ("try", "later"), silent=False)
        for _, event in plan_events(push, cfg, seed=seed, received_at=0.0):
            planned[event["event_id"]] = {k: v for k, v in event.items() if k != "occurred_at"}
    return planned


# --- reading payloads ------------------------------------------------------------------


def test_read_push_finds_the_delivery_id_and_actions_in_every_provider() -> None:
    assert read_push("apns", apns_body(42)) == ReceivedPush(42, ("try", "later"), silent=False)
    assert read_push("fcm", fcm_message(42)) == ReceivedPush(42, ("try", "later"), silent=False)
    assert read_push("webpush", web_payload(42)) == ReceivedPush(42, ("try", "later"), False)
    assert read_push("apns", apns_body(7, actions=())) == ReceivedPush(7, (), silent=False)
    assert read_push("fcm", fcm_message(7, actions=())) == ReceivedPush(7, (), silent=False)
    assert read_push("webpush", web_payload(7, actions=())) == ReceivedPush(7, (), False)


def test_read_push_skips_pushes_without_a_usable_delivery_id() -> None:
    assert read_push("apns", apns_body(None)) is None
    assert read_push("fcm", fcm_message(None)) is None
    for bad in ("", "abc", "-3", "0", "1.5", True, None, ["1"]):
        assert read_push("apns", json.dumps({"aps": {}, DELIVERY_ID_KEY: bad})) is None
    assert read_push("apns", b"not json") is None
    assert read_push("fcm", "not a message") is None
    assert read_push("webpush", web_payload(None)) is None
    assert read_push("webpush", "not json") is None  # what the simulator keeps of non-JSON


def test_silent_pushes_are_recognised() -> None:
    apns_silent = json.dumps({"aps": {"content-available": 1}, DELIVERY_ID_KEY: "5"})
    fcm_silent = {"data": {DELIVERY_ID_KEY: "5"}, "android": {"priority": "high"}}
    assert read_push("apns", apns_silent) == ReceivedPush(5, (), silent=True)
    assert read_push("fcm", fcm_silent) == ReceivedPush(5, (), silent=True)
    fcm_ios = {"data": {DELIVERY_ID_KEY: "5"}, "apns": {"payload": {"aps": {"alert": "x"}}}}
    assert read_push("fcm", fcm_ios) == ReceivedPush(5, (), silent=False)
    web_silent = web_payload(5, actions=(), silent=True)
    assert "notification" not in web_silent
    assert read_push("webpush", web_silent) == ReceivedPush(5, (), silent=True)


# --- planning ------------------------------------------------------------------------------


def test_plans_follow_the_shares_and_depend_only_on_seed_and_delivery() -> None:
    cfg = config(delay_min_seconds=1, delay_max_seconds=5)
    pushes = [ReceivedPush(i, ("try", "later"), silent=False) for i in range(1, 4001)]

    plans = [plan_events(p, cfg, seed=7, received_at=1000.0) for p in pushes]

    names = Counter(event["name"] for plan in plans for _, event in plan)
    # Exact for seed 7; the shares are 60 % open, 30 % and 20 % of the opened.
    assert names == {"push_opened": 2460, "push_clicked": 691, "purchase": 524}
    assert 0.57 < names["push_opened"] / 4000 < 0.63
    assert 0.27 < names["push_clicked"] / names["push_opened"] < 0.33
    assert 0.17 < names["purchase"] / names["push_opened"] < 0.23
    for push, plan in zip(pushes, plans, strict=True):
        assert plan == plan_events(push, cfg, seed=7, received_at=1000.0)  # reproducible
        times = [at for at, _ in plan]
        assert times == sorted(times)
        if plan:
            assert plan[0][1]["name"] == "push_opened"  # nothing happens unopened
            assert 1001.0 <= times[0] <= 1005.0
        for at, event in plan:
            suffix = {"push_opened": "open", "push_clicked": "click", "purchase": "goal"}
            assert event["event_id"] == f"sim-{push.delivery_id}-{suffix[event['name']]}"
            assert event["delivery_id"] == push.delivery_id
            assert event["occurred_at"] == datetime.fromtimestamp(at, UTC).isoformat(
                timespec="milliseconds"
            )
            if event["name"] == "push_clicked":
                assert event["action_id"] in ("try", "later")
            if event["name"] == "purchase":
                assert event["properties"] == {"value": 9.99, "currency": "EUR"}
    other_seed = [plan_events(p, cfg, seed=8, received_at=1000.0) for p in pushes]
    assert other_seed != plans
    assert {e["action_id"] for plan in plans for _, e in plan if "action_id" in e} == {
        "try",
        "later",
    }


def test_no_click_without_actions_and_nothing_for_silent_pushes() -> None:
    cfg = config(**ALWAYS, goal_event="signup", goal_properties={"plan": "pro"})
    plan = plan_events(ReceivedPush(9, (), silent=False), cfg, seed=1, received_at=0.0)
    assert [(e["event_id"], e["name"]) for _, e in plan] == [
        ("sim-9-open", "push_opened"),
        ("sim-9-goal", "signup"),
    ]
    assert plan[1][1]["properties"] == {"plan": "pro"}
    assert plan_events(ReceivedPush(9, ("a",), silent=True), cfg, seed=1, received_at=0.0) == []
    none = config(open_share=0, click_share=1, goal_share=1)
    assert plan_events(ReceivedPush(9, ("a",), silent=False), none, seed=1, received_at=0.0) == []


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"open_share": 1.5}, "open_share must be between 0 and 1"),
        ({"click_share": "x"}, "click_share must be a number"),
        ({"goal_event": "push_opened"}, "goal_event must be"),
        ({"goal_event": "no spaces"}, "goal_event must be"),
        ({"goal_properties": {"nested": {"a": 1}}}, "goal_properties must be"),
        ({"delay_min_seconds": 5, "delay_max_seconds": 1}, "delay_min_seconds must not exceed"),
        ({"batch_size": 1001}, "batch_size must be between 1 and 1000"),
        ({"url": "ftp://x"}, "url must be an http(s) URL"),
        ({"api_key": ""}, f"an API key is needed to report (set {API_KEY_ENV})"),
        ({"colour": "red"}, "unknown reporting knobs"),
    ],
)
def test_bad_knobs_are_refused(knobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(**knobs)


def test_command_line_takes_the_key_from_the_environment_only() -> None:
    options = {"report_url": "http://127.0.0.1:8000/v1/projects/p/events", "report_seed": 3}
    options |= {"report_open_share": 0.9, "report_goal_event": "signup"}

    cfg = reporting_from_options(options, {API_KEY_ENV: KEY})

    assert (cfg.url, cfg.api_key, cfg.seed) == (options["report_url"], KEY, 3)
    assert (cfg.open_share, cfg.click_share, cfg.goal_event) == (0.9, 0.3, "signup")
    assert cfg.public()["api_key"] == "set"
    assert KEY not in repr(cfg)
    with pytest.raises(ValueError, match=API_KEY_ENV):
        reporting_from_options(options, {})
    assert not reporting_from_options({"report_open_share": 0.9}, {}).enabled


# --- the reporter over real HTTP -------------------------------------------------------


def test_reporter_posts_the_planned_events_with_the_key() -> None:
    async def main() -> None:
        recorder = Recorder()
        await recorder.start()
        cfg = config(url=recorder.url, seed=11, **NO_DELAY, **ALWAYS)
        reporter = DeviceReporter(cfg)
        for delivery_id in range(1, 6):
            reporter.received.append(("apns", apns_body(delivery_id)))
            reporter.received.append(("fcm", fcm_message(delivery_id + 100)))
        reporter.received.append(("apns", apns_body(None)))
        async with running(reporter):
            await until(lambda: len(recorder.stored) == 30, "30 events")
        await recorder.stop()

        ids = [*range(1, 6), *range(101, 106)]
        got = {
            k: {f: v for f, v in e.items() if f != "occurred_at"}
            for k, e in recorder.stored.items()
        }
        assert got == expected_events(ids, cfg, seed=11)
        assert {auth for auth, _ in recorder.requests} == {f"Bearer {KEY}"}
        for event in recorder.stored.values():
            assert datetime.fromisoformat(event["occurred_at"]).utcoffset() is not None
        stats = reporter.stats.snapshot()
        assert stats["received"] == 11 and stats["skipped"] == 1
        assert stats["planned"] == {"push_opened": 10, "push_clicked": 10, "purchase": 10}
        assert (stats["accepted"], stats["duplicates"], stats["dropped"]) == (30, 0, 0)

    asyncio.run(main())


def test_reporter_batches_up_to_the_batch_size() -> None:
    async def main() -> None:
        recorder = Recorder()
        await recorder.start()
        cfg = config(url=recorder.url, open_share=1, click_share=0, goal_share=0, **NO_DELAY)
        reporter = DeviceReporter(cfg)
        reporter.received.extend(("apns", apns_body(i)) for i in range(1, 2501))
        async with running(reporter):
            await until(lambda: len(recorder.stored) == 2500, "2,500 events")
        await recorder.stop()

        assert [len(events) for _, events in recorder.requests] == [1000, 1000, 500]
        assert set(recorder.stored) == {f"sim-{i}-open" for i in range(1, 2501)}

    asyncio.run(main())


def test_a_push_delivered_twice_reports_the_same_event_ids() -> None:
    async def main() -> None:
        recorder = Recorder()
        await recorder.start()
        cfg = config(url=recorder.url, **NO_DELAY, **ALWAYS)
        reporter = DeviceReporter(cfg)
        async with running(reporter):
            reporter.received.append(("apns", apns_body(77)))
            await until(lambda: reporter.stats.accepted == 3, "the first three")
            reporter.received.append(("apns", apns_body(77)))  # the provider got it again
            await until(lambda: reporter.stats.duplicates == 3, "the repeat")
        await recorder.stop()

        first, second = (events for _, events in recorder.requests)
        assert [e["event_id"] for e in first] == ["sim-77-open", "sim-77-click", "sim-77-goal"]
        assert [e["event_id"] for e in second] == [e["event_id"] for e in first]
        assert len(recorder.stored) == 3

    asyncio.run(main())


@pytest.mark.parametrize("failures", [[500], [503, 429], [502, 500, 503]])
def test_server_errors_and_throttling_are_retried_with_the_same_batch(
    failures: list[int],
) -> None:
    async def main() -> None:
        recorder = Recorder()
        recorder.fail_with = list(failures)
        await recorder.start()
        cfg = config(url=recorder.url, retry_base_seconds=0.01, **NO_DELAY, **ALWAYS)
        reporter = DeviceReporter(cfg)
        reporter.received.append(("fcm", fcm_message(5)))
        async with running(reporter):
            await until(lambda: reporter.stats.accepted == 3, "a successful retry")
        await recorder.stop()

        batches = [events for _, events in recorder.requests]
        assert len(batches) == len(failures) + 1
        assert all(batch == batches[0] for batch in batches)
        assert reporter.stats.failed_attempts == len(failures)
        assert reporter.stats.dropped == 0

    asyncio.run(main())


def test_connection_refused_is_retried_until_the_api_is_up() -> None:
    async def main() -> None:
        recorder = Recorder()
        port = free_port()  # nothing listens there yet
        url = f"http://127.0.0.1:{port}/v1/projects/p/events"
        cfg = config(url=url, retry_base_seconds=0.01, retry_max_seconds=0.2, max_attempts=20)
        reporter = DeviceReporter(cfg.updated({**NO_DELAY, **ALWAYS}))
        reporter.received.append(("apns", apns_body(8)))
        async with running(reporter):
            await until(lambda: reporter.stats.failed_attempts >= 2, "refused connections")
            await recorder.start(port)
            await until(lambda: reporter.stats.accepted == 3, "delivery once up")
        await recorder.stop()

        assert set(recorder.stored) == {"sim-8-open", "sim-8-click", "sim-8-goal"}
        assert reporter.stats.dropped == 0

    asyncio.run(main())


@pytest.mark.parametrize(
    ("failures", "max_attempts", "requests"),
    [([401], 6, 1), ([400], 6, 1), ([503, 503, 503], 3, 3)],
    ids=["401-final", "400-final", "attempts-exhausted"],
)
def test_final_errors_and_exhausted_attempts_drop_the_batch(
    failures: list[int], max_attempts: int, requests: int
) -> None:
    async def main() -> None:
        recorder = Recorder()
        recorder.fail_with = list(failures)
        await recorder.start()
        cfg = config(url=recorder.url, retry_base_seconds=0.01, max_attempts=max_attempts)
        reporter = DeviceReporter(cfg.updated({**NO_DELAY, **ALWAYS}))
        reporter.received.append(("apns", apns_body(3)))
        async with running(reporter):
            await until(lambda: reporter.stats.dropped == 3, "the batch dropped")
            reporter.received.append(("apns", apns_body(4)))  # the next batch still goes
            await until(lambda: reporter.stats.accepted == 3, "the next batch")
        await recorder.stop()

        assert len(recorder.requests) == requests + 1
        assert set(recorder.stored) == {"sim-4-open", "sim-4-click", "sim-4-goal"}

    asyncio.run(main())


def test_the_backlog_is_bounded() -> None:
    reporter = DeviceReporter(config(max_pending=4, **NO_DELAY, **ALWAYS))
    reporter.received.extend(("apns", apns_body(i)) for i in range(1, 4))

    reporter.drain(0.0)

    assert reporter.pending == 4
    assert reporter.stats.dropped == 5
    assert sum(reporter.stats.planned.values()) == 4


# --- inside the simulators ---------------------------------------------------------


def control(sim: SimulatorServer, method: str, path: str, body: object = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(sim.addresses.control_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture
def reporting_off(sim: SimulatorServer) -> Iterator[SimulatorServer]:
    yield sim
    sim.reset(config=True)  # back to the session's start knobs: reporting off


def test_reporting_is_off_by_default_and_the_simulators_then_keep_nothing(
    reporting_off: SimulatorServer, apns_config: ApnsConfig
) -> None:
    sim = reporting_off
    push = OutgoingPush("d1", apns_token(1), json.loads(apns_body(1)))

    [result] = asyncio.run(send_with(ApnsSender(apns_config), [push]))

    assert result.outcome == "sent"
    assert sim.reporter is None
    assert sim.apns is not None and sim.fcm is not None
    assert sim.apns.report_sink is None and sim.fcm.report_sink is None
    assert control(sim, "GET", "/reporting") == (200, {"enabled": False})


def test_pushes_sent_to_the_simulators_come_back_as_events(
    reporting_off: SimulatorServer, apns_config: ApnsConfig, fcm_config: FcmConfig
) -> None:
    sim = reporting_off
    browsers = sim.mint_webpush_subscriptions(2)
    vapid_pem, vapid_public = generate_vapid_key_pair()
    web_config = WebPushConfig(
        vapid_private_key=vapid_pem,
        vapid_public_key=vapid_public,
        subject="mailto:ops@example.com",
        ca_file=str(sim.credentials.ca_file),
    )
    headers = webpush_headers(ttl_seconds=60, priority="high")

    async def main() -> None:
        recorder = Recorder()
        await recorder.start()
        knobs = {"url": recorder.url, "api_key": KEY, "seed": 5, **NO_DELAY, **ALWAYS}
        status, described = await asyncio.to_thread(control, sim, "POST", "/reporting", knobs)
        assert status == 200
        assert described["enabled"] is True and described["api_key"] == "set"
        assert KEY not in json.dumps(described)
        apns = [OutgoingPush(f"a{i}", apns_token(i), json.loads(apns_body(i))) for i in (1, 2)]
        fcm = [OutgoingPush(f"f{i}", fcm_token(i), fcm_message(i + 10)) for i in (1, 2)]
        web = [
            OutgoingPush(f"w{i}", b["endpoint"], web_payload(i), headers=headers, keys=b["keys"])
            for i, b in zip((21, 22), browsers, strict=True)
        ]
        await send_with(ApnsSender(apns_config), apns)
        await send_with(FcmSender(fcm_config), fcm)
        await send_with(WebPushSender(web_config), web)
        await until(lambda: len(recorder.stored) == 18, "18 events")
        await recorder.stop()

        assert set(recorder.stored) == {
            f"sim-{i}-{step}" for i in (1, 2, 11, 12, 21, 22) for step in ("open", "click", "goal")
        }
        status, described = await asyncio.to_thread(control, sim, "GET", "/reporting")
        assert described["stats"]["received"] == 6
        assert described["stats"]["accepted"] == 18

    asyncio.run(main())
    # Turned off at run time, the simulators drop their sink again.
    assert control(sim, "POST", "/reporting", {"url": ""}) == (200, {"enabled": False})
    assert sim.apns is not None and sim.apns.report_sink is None


def test_refused_reporting_knobs_change_nothing(reporting_off: SimulatorServer) -> None:
    sim = reporting_off

    status, body = control(sim, "POST", "/reporting", {"url": "http://127.0.0.1:9/e"})

    assert (status, body) == (400, {"error": f"an API key is needed to report (set {API_KEY_ENV})"})
    assert control(sim, "POST", "/reporting", {"open_share": 2})[0] == 400
    assert control(sim, "GET", "/reporting") == (200, {"enabled": False})
