"""``manage.py run_simulators``: local APNs, FCM and Web Push for the demo, tests and benches.

A thin wrapper: the simulators are plain asyncio code in ``delivery/simulators``
and need neither models nor the database. Defaults come from the
``HERALD_SIMULATOR_*`` settings so ``seed_demo`` and the web app agree on where the
simulators listen and where their credentials live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from delivery.simulators.cli import add_simulator_arguments, run
from delivery.simulators.server import (
    DEFAULT_APNS_PORT,
    DEFAULT_CERT_DIR,
    DEFAULT_CONTROL_PORT,
    DEFAULT_FCM_PORT,
    DEFAULT_HOST,
    DEFAULT_WEBPUSH_PORT,
)


class Command(BaseCommand):
    help = (
        "Run local APNs (HTTP/2 + TLS, JWT-checked), FCM (HTTP v1 + OAuth token "
        "endpoint) and Web Push (RFC 8030, VAPID-checked, decrypting) simulators with a "
        "control server, until Ctrl-C/SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_simulator_arguments(parser)
        parser.set_defaults(
            host=getattr(settings, "HERALD_SIMULATOR_HOST", DEFAULT_HOST),
            apns_port=getattr(settings, "HERALD_SIMULATOR_APNS_PORT", DEFAULT_APNS_PORT),
            fcm_port=getattr(settings, "HERALD_SIMULATOR_FCM_PORT", DEFAULT_FCM_PORT),
            control_port=getattr(settings, "HERALD_SIMULATOR_CONTROL_PORT", DEFAULT_CONTROL_PORT),
            webpush_port=getattr(settings, "HERALD_SIMULATOR_WEBPUSH_PORT", DEFAULT_WEBPUSH_PORT),
            cert_dir=Path(getattr(settings, "HERALD_SIMULATOR_DIR", DEFAULT_CERT_DIR)),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run(options, self.stdout)
