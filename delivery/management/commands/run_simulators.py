"""``manage.py run_simulators``: local APNs and FCM for the demo, tests and benches.

A thin wrapper: the simulators are plain asyncio code in ``delivery/simulators``
and need neither models nor the database.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from delivery.simulators.cli import add_simulator_arguments, run


class Command(BaseCommand):
    help = (
        "Run local APNs (HTTP/2 + TLS, JWT-checked) and FCM (HTTP v1 + OAuth token "
        "endpoint) simulators with a control server, until Ctrl-C/SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_simulator_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run(options, self.stdout)
