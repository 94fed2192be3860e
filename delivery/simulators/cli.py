"""Command-line options shared by ``manage.py run_simulators`` and
``python -m delivery.simulators`` (the latter needs no Django, which is what
bench/ and the e2e suite start in a separate process)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from delivery.simulators.server import (
    DEFAULT_APNS_PORT,
    DEFAULT_CERT_DIR,
    DEFAULT_CONTROL_PORT,
    DEFAULT_FCM_PORT,
    DEFAULT_HOST,
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
        help="tokens (one per line, # comments) answered as unregistered by both providers",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON line with ports and credential paths once ready",
    )


def read_token_file(path: Path) -> list[str]:
    tokens = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            tokens.append(line)
    return tokens


def server_from_options(options: Mapping[str, Any]) -> SimulatorServer:
    invalid_file = options.get("invalid_tokens_file")
    return SimulatorServer(
        host=options["host"],
        apns_port=options["apns_port"],
        fcm_port=options["fcm_port"],
        control_port=options["control_port"],
        cert_dir=Path(options["cert_dir"]),
        latency_ms=options["latency_ms"],
        error_rate_429=options["error_rate_429"],
        error_rate_5xx=options["error_rate_5xx"],
        seed=options.get("seed"),
        invalid_tokens=read_token_file(Path(invalid_file)) if invalid_file else [],
    )


def describe(server: SimulatorServer) -> dict[str, Any]:
    """What a client needs: endpoints (ApnsConfig.endpoint / FcmConfig.endpoint),
    the CA to trust, and the credential files."""
    addresses = server.addresses
    credentials = server.credentials
    return {
        "apns_endpoint": addresses.apns_endpoint,
        "fcm_endpoint": addresses.fcm_base_url,
        "control_url": addresses.control_url,
        "ca_file": str(credentials.ca_file),
        "apns_key_file": str(credentials.apns_key_file),
        "apns_team_id": credentials.team_id,
        "apns_key_id": credentials.key_id,
        "apns_topic": credentials.topic,
        "fcm_service_account_file": str(credentials.fcm_service_account_file),
        "fcm_project_id": str(credentials.service_account_info["project_id"]),
        "cert_dir": str(credentials.directory),
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
            f"  control (HTTP)       {info['control_url']}/stats  /reset  /config  /healthz\n"
            f"  CA to trust          {info['ca_file']}\n"
            f"  APNs key (.p8)       {info['apns_key_file']}  team={info['apns_team_id']} "
            f"key_id={info['apns_key_id']} topic={info['apns_topic']}\n"
            f"  FCM service account  {info['fcm_service_account_file']}  "
            f"project={info['fcm_project_id']}\n"
        )
    out.flush()


def run(options: Mapping[str, Any], out: Output) -> None:
    server = server_from_options(options)
    serve_forever(server, on_ready=lambda s: print_ready(s, out, as_json=bool(options.get("json"))))
