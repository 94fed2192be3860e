"""Command-line options shared by ``manage.py run_simulators`` and
``python -m delivery.simulators`` (the latter needs no Django, which is what
bench/ and the e2e suite start in a separate process)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from delivery.simulators.reporting import API_KEY_ENV, ReportingConfig
from delivery.simulators.server import (
    DEFAULT_APNS_PORT,
    DEFAULT_CERT_DIR,
    DEFAULT_CONTROL_PORT,
    DEFAULT_FCM_PORT,
    DEFAULT_HOST,
    DEFAULT_WEBPUSH_PORT,
    SimulatorServer,
    serve_forever,
)


class Output(Protocol):
    """sys.stdout or Django's OutputWrapper."""

    def write(self, msg: str, /) -> Any: ...

    def flush(self) -> None: ...


def add_simulator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--apns-port", type=int, default=DEFAULT_APNS_PORT, help="0 = any free")
    parser.add_argument("--fcm-port", type=int, default=DEFAULT_FCM_PORT, help="0 = any free")
    parser.add_argument("--control-port", type=int, default=DEFAULT_CONTROL_PORT)
    parser.add_argument(
        "--webpush-port", type=int, default=DEFAULT_WEBPUSH_PORT, help="0 = any free"
    )
    parser.add_argument(
        "--cert-dir",
        type=Path,
        default=DEFAULT_CERT_DIR,
        help="where the demo TLS/APNs/FCM credentials are generated once and reused",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate-429", type=float, default=0.0)
    parser.add_argument("--error-rate-5xx", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None, help="seed for injected errors")
    parser.add_argument(
        "--invalid-tokens-file",
        type=Path,
        default=None,
        help="tokens (one per line, # comments) answered as unregistered by every provider",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON line with ports and credential paths once ready",
    )
    device = parser.add_argument_group(
        "device behaviour",
        "Report opens, clicks and a goal event for received pushes to Herald's events "
        f"API (off unless --report-url is given; the API key is read from ${API_KEY_ENV}).",
    )
    device.add_argument(
        "--report-url", default=None, help="e.g. http://127.0.0.1:8000/v1/projects/<id>/events"
    )
    device.add_argument("--report-open-share", type=float, default=None, help="default 0.6")
    device.add_argument(
        "--report-click-share", type=float, default=None, help="of opened pushes; default 0.3"
    )
    device.add_argument(
        "--report-goal-share", type=float, default=None, help="of opened pushes; default 0.2"
    )
    device.add_argument("--report-goal-event", default=None, help='default "purchase"')
    device.add_argument(
        "--report-goal-properties",
        type=json.loads,
        default=None,
        help='JSON object; default {"value": 9.99, "currency": "EUR"}',
    )
    device.add_argument("--report-delay-min", type=float, default=None, help="seconds; default 1")
    device.add_argument("--report-delay-max", type=float, default=None, help="seconds; default 5")
    device.add_argument("--report-seed", type=int, default=None, help="default: random")


def read_token_file(path: Path) -> list[str]:
    tokens = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tokens.append(line)
    return tokens


REPORT_OPTIONS = {
    "report_url": "url",
    "report_open_share": "open_share",
    "report_click_share": "click_share",
    "report_goal_share": "goal_share",
    "report_goal_event": "goal_event",
    "report_goal_properties": "goal_properties",
    "report_delay_min": "delay_min_seconds",
    "report_delay_max": "delay_max_seconds",
    "report_seed": "seed",
}


def reporting_from_options(
    options: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ReportingConfig:
    """The device behaviour asked for on the command line (ValueError if invalid)."""
    environ = os.environ if environ is None else environ
    knobs = {
        knob: options[option]
        for option, knob in REPORT_OPTIONS.items()
        if options.get(option) is not None
    }
    if knobs.get("url"):
        knobs["api_key"] = environ.get(API_KEY_ENV, "")
    return ReportingConfig().updated(knobs)


def server_from_options(options: Mapping[str, Any]) -> SimulatorServer:
    invalid_file = options.get("invalid_tokens_file")
    reporting = reporting_from_options(options)
    return SimulatorServer(
        host=options["host"],
        apns_port=options["apns_port"],
        fcm_port=options["fcm_port"],
        control_port=options["control_port"],
        webpush_port=options.get("webpush_port", DEFAULT_WEBPUSH_PORT),
        cert_dir=Path(options["cert_dir"]),
        latency_ms=options["latency_ms"],
        error_rate_429=options["error_rate_429"],
        error_rate_5xx=options["error_rate_5xx"],
        seed=options.get("seed"),
        invalid_tokens=read_token_file(Path(invalid_file)) if invalid_file else [],
        reporting=reporting,
    )


def describe(server: SimulatorServer) -> dict[str, Any]:
    """What a client needs: endpoints (ApnsConfig.endpoint / FcmConfig.endpoint),
    the CA to trust, and the credential files."""
    addresses = server.addresses
    credentials = server.credentials
    return {
        "apns_endpoint": addresses.apns_endpoint,
        "fcm_endpoint": addresses.fcm_base_url,
        "webpush_endpoint": addresses.webpush_base_url,
        "control_url": addresses.control_url,
        "ca_file": str(credentials.ca_file),
        "apns_key_file": str(credentials.apns_key_file),
        "apns_team_id": credentials.team_id,
        "apns_key_id": credentials.key_id,
        "apns_topic": credentials.topic,
        "fcm_service_account_file": str(credentials.fcm_service_account_file),
        "fcm_project_id": str(credentials.service_account_info["project_id"]),
        "cert_dir": str(credentials.directory),
        "reporting": server.reporter is not None,
    }


def print_ready(server: SimulatorServer, out: Output, *, as_json: bool) -> None:
    info = describe(server)
    if as_json:
        out.write(json.dumps(info) + "\n")
    else:
        out.write(
            "Herald provider simulators running (Ctrl-C to stop)\n"
            f"  APNs (HTTP/2, TLS)   https://{info['apns_endpoint']}\n"
            f"  FCM  (HTTP v1, TLS)  {info['fcm_endpoint']}\n"
            f"  Web Push (RFC 8030)  {info['webpush_endpoint']}/push/<subscription>  "
            "(mint: POST control /webpush/subscriptions)\n"
            f"  control (HTTP)       {info['control_url']}/stats  /reset  /config  "
            "/reporting  /healthz\n"
            f"  CA to trust          {info['ca_file']}\n"
            f"  APNs key (.p8)       {info['apns_key_file']}  team={info['apns_team_id']} "
            f"key_id={info['apns_key_id']} topic={info['apns_topic']}\n"
            f"  FCM service account  {info['fcm_service_account_file']}  "
            f"project={info['fcm_project_id']}\n"
        )
        if server.reporter is not None:
            config = server.reporter.config
            out.write(f"  device behaviour     {config.summary()} -> {config.url}\n")
    out.flush()


def run(options: Mapping[str, Any], out: Output) -> None:
    try:
        server = server_from_options(options)
    except ValueError as exc:
        raise SystemExit(f"simulators: {exc}") from exc
    serve_forever(server, on_ready=lambda s: print_ready(s, out, as_json=bool(options.get("json"))))
