"""`manage.py rotate_secrets`: re-encrypt every stored credential under the newest key.

Rotation: put the new key first in HERALD_SECRETS_KEY (the old ones after it) on
every node, run this once, then drop the old keys. Projects are handled in batches,
each batch locked (SELECT ... FOR UPDATE) so an operator saving credentials at the
same moment is not overwritten; a token already under the newest key is left as it
is, so running it again changes nothing. A value no configured key opens is named
(project id and field, never the value) and the command exits non-zero after the
rest are done. docs/deploy.md, "Secrets key".
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from core.audit import AuditedCommand, audit_record, with_fields
from core.fields import SEALED_JSON_KEY
from core.models import Project
from core.secrets import Sealed, SecretUnreadable, configured_keys, reencrypt

TEXT_FIELDS = ("apns_auth_key", "apns_certificate", "webpush_vapid_private_key")
JSON_FIELD = "fcm_service_account"


class Command(AuditedCommand):
    help = "Re-encrypt every stored provider credential under the first HERALD_SECRETS_KEY."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200, help="projects per batch")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        configured_keys()  # SecretsKeyMissing (clear message) before touching anything
        ids = list(Project.objects.order_by("pk").values_list("pk", flat=True))
        rewritten = current = 0
        unreadable: list[str] = []
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            done, kept, failed = self._rotate_batch(batch)
            rewritten, current = rewritten + done, current + kept
            unreadable += failed
            self.stdout.write(
                f"{min(start + batch_size, len(ids))}/{len(ids)} projects: "
                f"{rewritten} secrets re-encrypted, {current} already under the newest key"
            )
        self.stdout.write(
            f"Done: {len(ids)} projects, {rewritten} secrets re-encrypted, "
            f"{current} already under the newest key, {len(unreadable)} unreadable."
        )
        if unreadable:
            raise CommandError(
                "No configured key decrypts: " + "; ".join(unreadable) + ". Add the key they "
                "were written with to HERALD_SECRETS_KEY and run again, or paste these "
                "credentials anew."
            )

    @staticmethod
    @transaction.atomic
    def _rotate_batch(ids: list[Any]) -> tuple[int, int, list[str]]:
        rewritten = current = 0
        unreadable: list[str] = []
        projects = Project.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        for project in projects.only("pk", *TEXT_FIELDS, JSON_FIELD):
            changed: list[str] = []
            sealed: list[tuple[str, Sealed]] = [
                (name, getattr(project, name)) for name in TEXT_FIELDS
            ]
            info = project.fcm_service_account
            if isinstance(info, dict) and isinstance(info.get(SEALED_JSON_KEY), Sealed):
                sealed.append((JSON_FIELD, info[SEALED_JSON_KEY]))
            for name, value in sealed:
                if not value:
                    continue
                try:
                    token = reencrypt(value.token)
                except SecretUnreadable:
                    unreadable.append(f"project {project.pk} {name}")
                    continue
                if token is None:
                    current += 1
                    continue
                rewritten += 1
                changed.append(name)
                if name == JSON_FIELD:
                    project.fcm_service_account = {**info, SEALED_JSON_KEY: Sealed(token)}
                else:
                    setattr(project, name, Sealed(token))
            if changed:
                project.save(update_fields=changed)
                audit_record(
                    action="project.credentials_reencrypted",
                    project_id=project.pk,
                    object_type="project",
                    object_id=project.pk,
                    changes=with_fields(changed),
                )
        return rewritten, current, unreadable
