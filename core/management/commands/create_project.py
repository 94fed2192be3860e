"""`manage.py create_project NAME [--delivery-guarantee G] [--expires-in DAYS] [--json]
[credentials]`: a new project and its first admin key.

The key is printed once and never again (only its hash is stored), so the
operator, or the script reading `--json`, must keep it now. Provider credentials
may be given from files; they are checked by core.credentials (through
`project_update`) like a paste in the admin, and a refusal creates nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from core.audit import AuditedCommand
from core.credentials import parse_fcm_service_account
from core.errors import ApplicationError
from core.models import DeliveryGuarantee
from core.services import api_key_create, project_create, project_update

FIRST_KEY_NAME = "initial admin key"


class Command(AuditedCommand):
    help = "Create a project and its first admin API key (the key is printed once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Project name, e.g. 'Acme iOS'.")
        parser.add_argument(
            "--delivery-guarantee",
            default=DeliveryGuarantee.AT_MOST_ONCE,
            help="After a worker crash, pushes in flight stay unknown (at_most_once, the "
            "default) or are sent again (at_least_once).",
        )
        parser.add_argument(
            "--expires-in",
            type=int,
            metavar="DAYS",
            help="The key stops working after DAYS days (default: never; "
            "rotate_api_key replaces it without downtime).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print one JSON object {"project_id", "api_key"} instead of text.',
        )
        apns = parser.add_argument_group("APNs token auth (optional)")
        apns.add_argument("--apns-team-id", default="")
        apns.add_argument("--apns-key-id", default="")
        apns.add_argument("--apns-key-file", type=Path, help="The .p8 file.")
        apns.add_argument("--apns-topic", default="", help="The app's bundle id.")
        apns.add_argument("--apns-sandbox", action="store_true", help="Use the APNs sandbox.")
        fcm = parser.add_argument_group("FCM (optional)")
        fcm.add_argument(
            "--fcm-service-account-file", type=Path, help="The service-account JSON file."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["expires_in"]
        if days is not None and days < 1:
            raise CommandError("--expires-in must be a number of days, at least 1.")
        expires_at = None if days is None else timezone.now() + timedelta(days=days)
        try:
            with transaction.atomic():  # a refused option leaves no project behind
                project = project_create(name=options["name"])
                project_update(
                    project=project,
                    fields={
                        "delivery_guarantee": options["delivery_guarantee"],
                        **self._credentials(options),
                    },
                )
                key, full_key = api_key_create(
                    project=project, name=FIRST_KEY_NAME, expires_at=expires_at
                )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        if options["json"]:
            self.stdout.write(json.dumps({"project_id": str(project.id), "api_key": full_key}))
            return
        self.stdout.write(f'Created project "{project.name}".')
        self.stdout.write(f"Project id: {project.id}")
        self.stdout.write(f"API key:    {full_key}")
        if key.expires_at is not None:
            self.stdout.write(f"Expires:    {key.expires_at.isoformat()}")
        self.stdout.write("Store the key now: only its hash is kept, it cannot be shown again.")

    @staticmethod
    def _credentials(options: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "apns_team_id": options["apns_team_id"],
            "apns_key_id": options["apns_key_id"],
            "apns_topic": options["apns_topic"],
            "apns_use_sandbox": options["apns_sandbox"],
        }
        try:
            if options["apns_key_file"] is not None:
                fields["apns_auth_key"] = options["apns_key_file"].read_text()
            if options["fcm_service_account_file"] is not None:
                text = options["fcm_service_account_file"].read_text()
                fields["fcm_service_account"] = parse_fcm_service_account(text)
        except OSError as exc:
            raise CommandError(f"Cannot read {exc.filename}: {exc.strerror}.") from exc
        return {name: value for name, value in fields.items() if value}
