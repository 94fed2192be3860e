"""`manage.py rotate_api_key PREFIX [--grace-hours H] [--json]`: replace an API key
without downtime (core.services.api_key_rotate).

The new key (same project, name, scope and lifetime) is printed once; the old one
keeps working for H hours (default 24; 0 revokes it now), so clients can be switched
meanwhile. PREFIX is the part of the key the console shows: `hk_<prefix>_…`,
`hk_<prefix>` or the bare prefix; the full key works too.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError, CommandParser

from core.audit import AuditedCommand
from core.errors import ApplicationError
from core.models import KEY_PREFIX, ApiKey
from core.services import DEFAULT_ROTATION_GRACE, api_key_rotate


def key_prefix(text: str) -> str:
    """The row prefix in any of the forms an operator may paste."""
    text = text.strip().rstrip("…").rstrip("_")
    if text.startswith(KEY_PREFIX):
        text = text[len(KEY_PREFIX) :]
    return text.partition("_")[0]


class Command(AuditedCommand):
    help = "Rotate an API key: print a new key once; the old one works for a grace period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix", help="The key's prefix, as shown: hk_<prefix>_…")
        parser.add_argument(
            "--grace-hours",
            type=float,
            default=DEFAULT_ROTATION_GRACE.total_seconds() / 3600,
            help="How long the old key keeps working (default 24; 0 revokes it now).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print one JSON object {"api_key", "expires_at", "old_key_expires_at", '
            '"old_key_revoked_at"} instead of text.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hours = options["grace_hours"]
        if not math.isfinite(hours) or hours < 0:
            raise CommandError("--grace-hours must be a number of hours, 0 or more.")
        prefix = key_prefix(options["prefix"])
        key = ApiKey.objects.filter(prefix=prefix).first() if prefix else None
        if key is None:
            raise CommandError(f"No API key with the prefix {options['prefix']!r}.")
        try:
            new_key, full_key = api_key_rotate(key=key, grace=timedelta(hours=hours))
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc

        def iso(value: Any) -> str | None:
            return None if value is None else value.isoformat()

        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "api_key": full_key,
                        "expires_at": iso(new_key.expires_at),
                        "old_key_expires_at": iso(key.expires_at),
                        "old_key_revoked_at": iso(key.revoked_at),
                    }
                )
            )
            return
        self.stdout.write(f'Rotated "{key.name}" of project "{key.project}".')
        self.stdout.write(f"New API key: {full_key}")
        if new_key.expires_at is not None:
            self.stdout.write(f"It expires:  {new_key.expires_at.isoformat()}")
        if key.revoked_at is not None:
            self.stdout.write(f"The old key {KEY_PREFIX}{key.prefix}_… is revoked.")
        else:
            self.stdout.write(
                f"The old key {KEY_PREFIX}{key.prefix}_… works until "
                f"{iso(key.expires_at)}: switch your clients before then."
            )
        self.stdout.write("Store the key now: only its hash is kept, it cannot be shown again.")
