"""`manage.py ensure_admin`: make sure the demo operator can log in to /ops/.

Idempotent so `make run` can call it on every start: the user is created, or
brought back to an active staff superuser with the given password.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from core.audit import AuditedCommand, audit_record, with_fields

DEFAULT_USERNAME = "admin"
DEFAULT_PASSWORD = "herald-admin"  # noqa: S105 - demo default, documented in the README
PASSWORD_ENV = "HERALD_ADMIN_PASSWORD"  # noqa: S105 - an environment variable name


class Command(AuditedCommand):
    help = (
        "Create or update a staff superuser for the operator console (/ops/). "
        f"Password: --password, else ${PASSWORD_ENV}, else '{DEFAULT_PASSWORD}'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=DEFAULT_USERNAME)
        parser.add_argument("--password", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"].strip()
        if not username:
            raise CommandError("--username must not be blank.")
        if options["password"] is not None:
            password, source = options["password"], "--password"
        elif os.environ.get(PASSWORD_ENV):
            password, source = os.environ[PASSWORD_ENV], PASSWORD_ENV
        else:
            password, source = DEFAULT_PASSWORD, "the demo default"
        user_model = get_user_model()
        with transaction.atomic():
            user = (
                user_model._default_manager.select_for_update()
                .filter(**{user_model.USERNAME_FIELD: username})
                .first()
            )
            created = user is None
            if user is None:
                user = user_model(**{user_model.USERNAME_FIELD: username})
            try:
                validate_password(password, user)
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
            user.is_staff = True
            user.is_superuser = True
            user.is_active = True
            user.set_password(password)
            user.save()
            audit_record(
                action="user.created" if created else "user.updated",
                project_id=None,
                obj=user,
                changes=with_fields(["is_staff", "is_superuser", "is_active", "password"]),
            )
        verb = "Created" if created else "Updated"
        self.stdout.write(
            f'{verb} superuser "{username}" (password from {source}). '
            f"Log in at {settings.HERALD_PUBLIC_URL.rstrip('/')}/ops/"
        )
