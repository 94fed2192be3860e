"""Run the APNs, FCM and Web Push simulators and their control server.

``SimulatorServer`` serves all four on one event loop, either on a background
thread of the calling process (``start()``/``stop()``, for tests) or in the
foreground (``serve_forever()``, for ``manage.py run_simulators`` and bench/).
Ports 0 pick free ports; sockets are bound before the credentials are written so
the FCM service account's ``token_uri`` names the real port.

Control server (plain HTTP, its own port), used by tests and the e2e suite:

* ``GET /healthz`` -> ``{"ok": true}``
* ``GET /stats[?tokens=1]`` -> ``{"apns": {...}, "fcm": {...}, "webpush": {...}}``
  (ProviderStats)
* ``POST /reset`` -> clear counters; body ``{"config": true}`` also restores knobs
* ``GET /config``, ``POST /config`` with ``{"apns": {knobs}, "fcm": {knobs},
  "webpush": {knobs}}`` or ``{"all": {knobs}}`` (see
  :class:`~delivery.simulators.behaviour.Behaviour`)
* ``POST /webpush/subscriptions`` with ``{"count": n}`` -> ``{"subscriptions": [...]}``,
  n new browser subscriptions (``{"endpoint", "keys": {"p256dh", "auth"}}``)
* ``GET /reporting`` -> the device behaviour's knobs (never the API key) and counters;
  ``POST /reporting`` with ``{knobs}`` changes them, ``{"url": ""}`` turns it off
  (see :mod:`delivery.simulators.reporting`)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from delivery.simulators.apns import ApnsSimulator, apns_server_ssl_context
from delivery.simulators.behaviour import Behaviour, ProviderStats
from delivery.simulators.credentials import DemoCredentials, ensure_demo_credentials
from delivery.simulators.fcm import FcmSimulator, fcm_server_ssl_context
from delivery.simulators.reporting import DeviceReporter, ReportingConfig
from delivery.simulators.webpush import WebPushSimulator, load_or_create_seed

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_APNS_PORT = 2197
DEFAULT_FCM_PORT = 2198
DEFAULT_CONTROL_PORT = 2199
DEFAULT_WEBPUSH_PORT = 2196
DEFAULT_CERT_DIR = Path("var/simulators")
PROVIDERS = ("apns", "fcm", "webpush")


@dataclass(frozen=True, slots=True)
class SimulatorAddresses:
    host: str
    apns_port: int
    fcm_port: int
    control_port: int
    webpush_port: int = 0

    @property
    def apns_endpoint(self) -> str:
        """``ApnsConfig.endpoint`` value ("host:port")."""
        return f"{self.host}:{self.apns_port}"

    @property
    def fcm_base_url(self) -> str:
        """``FcmConfig.endpoint`` value."""
        return f"https://{self.host}:{self.fcm_port}"

    @property
    def webpush_base_url(self) -> str:
        """The origin minted web push endpoints name."""
        return f"https://{self.host}:{self.webpush_port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class SimulatorServer:
    """Both provider simulators plus the control server, on one event loop.

    ``behaviour`` knobs passed here apply to both providers at start (and are what
    ``reset(config=True)`` restores), as does ``reporting`` (the device behaviour,
    off unless it has a URL).
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        apns_port: int = 0,
        fcm_port: int = 0,
        control_port: int = 0,
        webpush_port: int = 0,
        cert_dir: Path = DEFAULT_CERT_DIR,
        reporting: ReportingConfig | None = None,
        **behaviour: Any,
    ) -> None:
        self.host = host
        self._requested_ports = (apns_port, fcm_port, control_port, webpush_port)
        self.cert_dir = Path(cert_dir)
        Behaviour(**behaviour)  # validate now, in the caller's thread
        self._initial_behaviour = dict(behaviour)
        self._initial_reporting = reporting or ReportingConfig()
        self.reporter: DeviceReporter | None = None
        self._addresses: SimulatorAddresses | None = None
        self._credentials: DemoCredentials | None = None
        self.apns: ApnsSimulator | None = None
        self.fcm: FcmSimulator | None = None
        self.webpush: WebPushSimulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._cleanup: list[Callable[[], Any]] = []
        self._closing_reporters: set[asyncio.Task[None]] = set()

    # --- addresses and credentials --------------------------------------------

    @property
    def addresses(self) -> SimulatorAddresses:
        if self._addresses is None:
            raise RuntimeError("SimulatorServer is not started")
        return self._addresses

    @property
    def credentials(self) -> DemoCredentials:
        if self._credentials is None:
            raise RuntimeError("SimulatorServer is not started")
        return self._credentials

    @property
    def apns_port(self) -> int:
        return self.addresses.apns_port

    @property
    def fcm_port(self) -> int:
        return self.addresses.fcm_port

    @property
    def control_port(self) -> int:
        return self.addresses.control_port

    @property
    def webpush_port(self) -> int:
        return self.addresses.webpush_port

    # --- lifecycle ------------------------------------------------------------

    async def start_async(self) -> SimulatorAddresses:
        """Bind, write/reuse credentials, and start serving on the running loop."""
        sockets = [_bind(self.host, port) for port in self._requested_ports]

        def close_sockets() -> None:
            for sock in sockets:
                sock.close()

        self._cleanup.append(close_sockets)
        ports = [s.getsockname()[1] for s in sockets]
        self._addresses = SimulatorAddresses(self.host, *ports)
        webpush_seed = await asyncio.to_thread(load_or_create_seed, self.cert_dir)
        credentials = await asyncio.to_thread(
            ensure_demo_credentials, self.cert_dir, fcm_base_url=self._addresses.fcm_base_url
        )
        self._credentials = credentials
        self.apns = ApnsSimulator(
            topic=credentials.topic,
            team_id=credentials.team_id,
            key_id=credentials.key_id,
            public_key_pem=credentials.apns_public_key_pem,
            behaviour=Behaviour(**self._initial_behaviour),
        )
        self.fcm = FcmSimulator(
            service_account_info=credentials.service_account_info,
            public_key_pem=credentials.fcm_public_key_pem,
            behaviour=Behaviour(**self._initial_behaviour),
        )
        base_url = self._addresses.webpush_base_url
        # The TLS certificate names localhost and 127.0.0.1: both are origins of this
        # push service (tests use them as two push services, each with its own pool).
        local = self.host in ("127.0.0.1", "localhost")
        aliases = (f"https://127.0.0.1:{ports[3]}", f"https://localhost:{ports[3]}")
        self.webpush = WebPushSimulator(
            seed=webpush_seed,
            base_url=base_url,
            aliases=aliases if local else (),
            behaviour=Behaviour(**self._initial_behaviour),
        )
        loop = asyncio.get_running_loop()
        apns_server = await loop.create_server(
            self.apns.protocol_factory,
            sock=sockets[0],
            ssl=apns_server_ssl_context(
                str(credentials.tls_cert_file),
                str(credentials.tls_key_file),
                str(credentials.ca_file),
            ),
        )
        web_ssl = fcm_server_ssl_context(
            str(credentials.tls_cert_file), str(credentials.tls_key_file)
        )
        fcm_runner, fcm_server = await _serve_counted(
            loop, self.fcm.build_app(), self.fcm.stats, sockets[1], web_ssl
        )
        webpush_runner, webpush_server = await _serve_counted(
            loop, self.webpush.build_app(), self.webpush.stats, sockets[3], web_ssl
        )
        control_runner = web.AppRunner(self._control_app(), access_log=None)
        await control_runner.setup()
        control_site = web.SockSite(control_runner, sockets[2])
        await control_site.start()

        async def close() -> None:
            apns_server.close()
            fcm_server.close()
            webpush_server.close()
            await fcm_runner.cleanup()
            await webpush_runner.cleanup()
            await control_runner.cleanup()

        self._cleanup.append(close)
        self._set_reporting(self._initial_reporting)
        return self._addresses

    async def stop_async(self) -> None:
        if self.reporter is not None:
            reporter, self.reporter = self.reporter, None
            await reporter.close()
        for task in list(self._closing_reporters):
            await task
        while self._cleanup:
            result = self._cleanup.pop()()
            if asyncio.iscoroutine(result):
                await result

    def start(self) -> SimulatorServer:
        """Serve on a background daemon thread; returns once the ports are bound."""
        if self._thread is not None:
            raise RuntimeError("already started")
        started: Future[SimulatorAddresses] = Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                started.set_result(loop.run_until_complete(self.start_async()))
            except BaseException as exc:  # report any startup failure to the caller
                started.set_exception(exc)
                return
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.close()

        self._thread = threading.Thread(target=run, name="herald-simulators", daemon=True)
        self._thread.start()
        started.result(timeout=60)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None
        self._loop = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- state, usable from any thread ------------------------------------------

    def _call(self, func: Callable[[], T]) -> T:
        """Run on the simulators' loop when it is on another thread (no races with
        request handling), directly otherwise."""
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            return func()

        async def call() -> T:
            return func()

        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=30)

    def _simulators(self) -> dict[str, ApnsSimulator | FcmSimulator | WebPushSimulator]:
        if self.apns is None or self.fcm is None or self.webpush is None:
            raise RuntimeError("SimulatorServer is not started")
        return {"apns": self.apns, "fcm": self.fcm, "webpush": self.webpush}

    def stats(self, *, tokens: bool = False) -> dict[str, Any]:
        return self._call(
            lambda: {
                name: sim.stats.snapshot(include_tokens=tokens)
                for name, sim in self._simulators().items()
            }
        )

    def reset(self, *, config: bool = False) -> None:
        def do_reset() -> None:
            for sim in self._simulators().values():
                sim.stats.reset()
                if config:
                    sim.behaviour = Behaviour(**self._initial_behaviour)
            if config:
                self._set_reporting(self._initial_reporting)

        self._call(do_reset)

    def revoke_auth(self) -> None:
        """Forget issued FCM access tokens and verified APNs/VAPID JWTs, as if the
        provider had rotated keys: the next request gets 401 (FCM) or is re-verified
        (APNs, web push). Lets tests exercise token refresh."""

        def revoke() -> None:
            assert self.apns is not None and self.fcm is not None and self.webpush is not None
            self.apns.forget_verified_tokens()
            self.fcm.revoke_access_tokens()
            self.webpush.forget_verified_tokens()

        self._call(revoke)

    def drop_connections(self) -> int:
        """Close every APNs client connection (after a GOAWAY); returns how many."""

        def drop() -> int:
            assert self.apns is not None
            return self.apns.drop_connections()

        return self._call(drop)

    def mint_webpush_subscriptions(self, count: int) -> list[dict[str, Any]]:
        """``count`` new browser subscriptions the web push simulator can decrypt for
        (``{"endpoint", "keys": {"p256dh", "auth"}}``); ValueError for a bad count."""

        def mint() -> list[dict[str, Any]]:
            assert self.webpush is not None
            return self.webpush.mint(count)

        return self._call(mint)

    def configure(self, knobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """``{"apns": {...}, "fcm": {...}, "webpush": {...}}`` or ``{"all": {...}}``;
        all-or-nothing."""
        return self._call(lambda: self._apply_config(knobs))

    def config(self) -> dict[str, Any]:
        return self._call(
            lambda: {name: sim.behaviour.as_dict() for name, sim in self._simulators().items()}
        )

    def reporting(self) -> dict[str, Any]:
        """The device behaviour's knobs (the API key only as "set") and counters."""
        return self._call(self._describe_reporting)

    def configure_reporting(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """Change device-behaviour knobs (all-or-nothing); an empty url turns it off."""

        def apply() -> dict[str, Any]:
            current = self.reporter.config if self.reporter is not None else None
            self._set_reporting((current or self._initial_reporting).updated(knobs))
            return self._describe_reporting()

        return self._call(apply)

    def _describe_reporting(self) -> dict[str, Any]:
        if self.reporter is None:
            return {"enabled": False}
        return self.reporter.describe()

    def _set_reporting(self, config: ReportingConfig) -> None:
        """On the loop: start, retune or stop the reporter and hand the simulators
        its sink (or None, so they do nothing per push)."""
        reporter = self.reporter
        if config.enabled and reporter is not None:
            reporter.reconfigure(config)
        elif config.enabled:
            reporter = DeviceReporter(config)
            reporter.start()
        else:
            if reporter is not None:
                task = asyncio.get_running_loop().create_task(reporter.close())
                self._closing_reporters.add(task)
                task.add_done_callback(self._closing_reporters.discard)
            reporter = None
        self.reporter = reporter
        sink = reporter.received if reporter is not None else None
        for sim in self._simulators().values():
            sim.report_sink = sink

    def _apply_config(self, knobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        simulators = self._simulators()
        unknown = set(knobs) - {*PROVIDERS, "all"}
        if unknown:
            raise ValueError(f"unknown providers: {sorted(unknown)}")
        updated: dict[str, Behaviour] = {}
        for name, sim in simulators.items():
            changes = {**dict(knobs.get("all", {})), **dict(knobs.get(name, {}))}
            if changes:
                candidate = replace(
                    sim.behaviour,
                    invalid_tokens=set(sim.behaviour.invalid_tokens),
                    foreign_tokens=set(sim.behaviour.foreign_tokens),
                    transient_failures=dict(sim.behaviour.transient_failures),
                )
                candidate.rng = sim.behaviour.rng
                candidate.update(changes)  # raises before anything is applied
                updated[name] = candidate
        for name, behaviour in updated.items():
            simulators[name].behaviour = behaviour
        return {name: sim.behaviour.as_dict() for name, sim in simulators.items()}

    # --- control HTTP server ------------------------------------------------------

    def _control_app(self) -> web.Application:
        app = web.Application()

        async def healthz(request: web.Request) -> web.Response:
            return web.json_response({"ok": True})

        async def stats(request: web.Request) -> web.Response:
            tokens = request.query.get("tokens", "") in ("1", "true", "yes")
            return web.json_response(self.stats(tokens=tokens))

        async def reset(request: web.Request) -> web.Response:
            body = await _json_body(request)
            self.reset(config=bool(body.get("config")))
            return web.json_response(self.stats())

        async def get_config(request: web.Request) -> web.Response:
            return web.json_response(self.config())

        async def post_config(request: web.Request) -> web.Response:
            body = await _json_body(request)
            try:
                return web.json_response(self.configure(body))
            except (ValueError, TypeError, AttributeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)

        app.router.add_get("/healthz", healthz)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        app.router.add_get("/config", get_config)
        app.router.add_post("/config", post_config)

        async def get_reporting(request: web.Request) -> web.Response:
            return web.json_response(self.reporting())

        async def post_reporting(request: web.Request) -> web.Response:
            body = await _json_body(request)
            try:
                return web.json_response(self.configure_reporting(body))
            except (ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)

        async def mint_subscriptions(request: web.Request) -> web.Response:
            body = await _json_body(request)
            count = body.get("count", 1)
            if not isinstance(count, int) or isinstance(count, bool):
                return web.json_response({"error": "count must be an integer"}, status=400)
            try:
                subscriptions = self.mint_webpush_subscriptions(count)
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response({"subscriptions": subscriptions})

        app.router.add_post("/webpush/subscriptions", mint_subscriptions)
        app.router.add_get("/reporting", get_reporting)
        app.router.add_post("/reporting", post_reporting)
        return app


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": "body is not JSON"})) from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be an object"}))
    return body


def serve_forever(
    server: SimulatorServer,
    *,
    on_ready: Callable[[SimulatorServer], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (management command, bench)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await server.start_async()
        try:
            if on_ready is not None:
                on_ready(server)
            await stop.wait()
        finally:
            await server.stop_async()

    asyncio.run(main())


async def _serve_counted(
    loop: asyncio.AbstractEventLoop,
    app: web.Application,
    stats: ProviderStats,
    sock: socket.socket,
    ssl_context: ssl.SSLContext,
) -> tuple[web.AppRunner, asyncio.Server]:
    """Serve an aiohttp app (FCM, web push) over TLS on ``sock``, counting each new
    connection in ``stats`` (a sender that reuses its connections opens few)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    handler_factory = runner.server
    assert handler_factory is not None

    def protocol() -> asyncio.BaseProtocol:
        stats.connections += 1
        return handler_factory()

    server = await loop.create_server(protocol, sock=sock, ssl=ssl_context)
    return runner, server
